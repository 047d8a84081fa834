#include "balancer/admin_state.h"

#include <gtest/gtest.h>

namespace tether::balancer {
namespace {

AdminState parse(const AdminFields& f, std::vector<std::string>* errors) { return parseAdminState(f, errors); }

TEST(AdminState, KeyAndMessageNameTheAddress) {
  EXPECT_EQ(adminStateKey("10.0.0.1:8080"), "tether:admin:backend:10.0.0.1:8080");
  EXPECT_EQ(parseAdminMessage("10.0.0.1:8080"), std::optional<std::string_view>("10.0.0.1:8080"));
  EXPECT_EQ(parseAdminMessage("[::1]:80"), std::optional<std::string_view>("[::1]:80"));
  EXPECT_FALSE(parseAdminMessage(""));
  EXPECT_FALSE(parseAdminMessage("10.0.0.1:80\r\n"));
  EXPECT_FALSE(parseAdminMessage("tether:admin:backend:1.2.3.4:80"));
  EXPECT_FALSE(parseAdminMessage(std::string(65, '1')));
}

TEST(AdminState, ReadsWhatItWrites) {
  AdminState s;
  s.has_drain = true;
  s.drain = true;
  s.drain_ms = 1'700'000'000'123;
  s.deadline_ms = 1'700'000'030'123;
  s.has_weight = true;
  s.weight = 7;
  s.weight_ms = 1'700'000'000'456;
  std::string drain = drainField(s), weight = weightField(s);
  EXPECT_EQ(drain, "1 1700000000123 1700000030123");
  EXPECT_EQ(weight, "7 1700000000456");
  std::vector<std::string> errors;
  AdminState r = parse({{"drain", drain}, {"weight", weight}, {"version", "12"}, {"by", "host-a 127.0.0.1:9901"}},
                       &errors);
  EXPECT_TRUE(errors.empty());
  EXPECT_TRUE(r.sameDrain(s));
  EXPECT_TRUE(r.sameWeight(s));
  EXPECT_EQ(r.version, 12u);
  EXPECT_EQ(r.by, "host-a 127.0.0.1:9901");
}

TEST(AdminState, AnEnabledBackendIsWrittenWithoutADeadline) {
  AdminState s;
  s.has_drain = true;
  s.drain_ms = 5;
  s.deadline_ms = 99;
  EXPECT_EQ(drainField(s), "0 5 0");
  std::vector<std::string> errors;
  AdminState r = parse({{"drain", "0 5 9"}}, &errors);
  EXPECT_TRUE(r.has_drain);
  EXPECT_FALSE(r.drain);
  EXPECT_EQ(r.deadline_ms, 0);
}

TEST(AdminState, NoKeyIsNoState) {
  std::vector<std::string> errors;
  EXPECT_TRUE(parse({}, &errors).empty());
  EXPECT_TRUE(errors.empty());
}

TEST(AdminState, AMalformedAspectIsAbsentAndReportedTheOtherStands) {
  std::vector<std::string> errors;
  AdminState r = parse({{"drain", "yes 5 0"}, {"weight", "40 6"}}, &errors);
  EXPECT_FALSE(r.has_drain);
  EXPECT_TRUE(r.has_weight);
  EXPECT_EQ(r.weight, 40u);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "drain: not \"<0|1> <ms> <deadline ms>\": \"yes 5 0\"");
}

TEST(AdminState, HostileValuesAreRefused) {
  const AdminFields bad[] = {
      {{"weight", "10001 1"}},
      {{"weight", "-1 1"}},
      {{"weight", "+5 1"}},
      {{"weight", " 5 1"}},
      {{"weight", "5  1"}},
      {{"weight", "5 1 "}},
      {{"weight", ""}},
      {{"weight", "99999999999999999999999 1"}},
      {{"weight", "5"}},
      {{"weight", "5 0"}},
      {{"weight", "5 1 2"}},
      {{"drain", "1"}},
      {{"drain", "1 5"}},
      {{"drain", "1 1e9 0"}},
      {{"drain", "1 5 soon"}},
      {{"drain", "2 5 0"}},
      {{"drain", std::string_view("1 5\0 0", 6)}},
      {{"drain", "1 5 0"}, {"drain", "0 6 0"}},
  };
  for (const AdminFields& f : bad) {
    std::vector<std::string> errors;
    AdminState r = parse(f, &errors);
    EXPECT_TRUE(r.empty()) << f[0].first << "=" << f[0].second;
    EXPECT_FALSE(errors.empty()) << f[0].first << "=" << f[0].second;
  }
}

TEST(AdminState, UnknownFieldsAreIgnoredAndMalformedExtrasDroppedAlone) {
  std::vector<std::string> errors;
  AdminState r = parse({{"colour", "blue"}, {"drain", "1 5 0"}, {"version", "x"}, {"by", std::string_view("a\nb")}},
                       &errors);
  EXPECT_TRUE(r.has_drain);
  EXPECT_TRUE(r.drain);
  EXPECT_EQ(r.version, 0u);
  EXPECT_EQ(r.by, "");
  EXPECT_EQ(errors.size(), 2u);
}

AdminState drained(std::int64_t at, bool on = true) {
  AdminState s;
  s.has_drain = true;
  s.drain = on;
  s.drain_ms = at;
  return s;
}

TEST(AdminMerge, RedisWinsOverAConfirmedStateWhateverTheClocks) {
  KnownAdminState ours{drained(1000), false, false};
  AdminMerge m = mergeAdminState(ours, drained(900, false));  // another tether, its clock behind
  EXPECT_EQ(m.drain, AdminWrite::kNone);
  EXPECT_FALSE(m.next.state.drain);
  EXPECT_EQ(m.next.state.drain_ms, 900);
}

TEST(AdminMerge, APendingChangeStandsUntilRedisHoldsItOrALaterOne) {
  KnownAdminState ours{drained(1000), true, false};
  AdminMerge older = mergeAdminState(ours, drained(900, false));
  EXPECT_EQ(older.drain, AdminWrite::kSet);
  EXPECT_TRUE(older.next.drain_pending);
  EXPECT_TRUE(older.next.state.drain);

  AdminMerge later = mergeAdminState(ours, drained(1100, false));
  EXPECT_EQ(later.drain, AdminWrite::kNone);
  EXPECT_FALSE(later.next.drain_pending);
  EXPECT_FALSE(later.next.state.drain);

  // Ours, read back: confirmed.
  AdminMerge same = mergeAdminState(ours, drained(1000));
  EXPECT_EQ(same.drain, AdminWrite::kNone);
  EXPECT_FALSE(same.next.drain_pending);

  AdminMerge none = mergeAdminState(ours, AdminState{});
  EXPECT_EQ(none.drain, AdminWrite::kSet);
}

TEST(AdminMerge, WhatRedisLostIsRestored) {
  KnownAdminState ours{drained(1000), false, false};
  ours.state.has_weight = true;
  ours.state.weight = 4;
  ours.state.weight_ms = 1001;
  AdminMerge m = mergeAdminState(ours, AdminState{});
  EXPECT_EQ(m.drain, AdminWrite::kRestore);
  EXPECT_EQ(m.weight, AdminWrite::kRestore);
  EXPECT_TRUE(m.next.state.drain);
  EXPECT_EQ(m.next.state.weight, 4u);
}

TEST(AdminMerge, AnUnreadableFieldIsOverwrittenByWhatWeKnow) {
  KnownAdminState ours{drained(1000), false, false};
  std::vector<std::string> errors;
  AdminState theirs = parseAdminState({{"drain", "garbage"}}, &errors);
  EXPECT_TRUE(theirs.bad_drain);
  AdminMerge m = mergeAdminState(ours, theirs);
  EXPECT_EQ(m.drain, AdminWrite::kSet);
  EXPECT_TRUE(m.next.state.drain);
  // Knowing nothing, nothing is written: the configuration's state stays.
  EXPECT_EQ(mergeAdminState(KnownAdminState{}, theirs).drain, AdminWrite::kNone);
}

TEST(AdminMerge, AspectsMergeApart) {
  KnownAdminState ours{drained(1000), true, false};
  AdminState theirs;
  theirs.has_weight = true;
  theirs.weight = 9;
  theirs.weight_ms = 800;
  theirs.version = 3;
  theirs.by = "b";
  AdminMerge m = mergeAdminState(ours, theirs);
  EXPECT_EQ(m.drain, AdminWrite::kSet);
  EXPECT_EQ(m.weight, AdminWrite::kNone);
  EXPECT_TRUE(m.next.state.drain);
  EXPECT_EQ(m.next.state.weight, 9u);
  EXPECT_EQ(m.next.state.version, 3u);
  EXPECT_EQ(m.next.state.by, "b");
}

TEST(AdminMerge, TwoPendingChangesConvergeOnTheLater) {
  // Both tethers changed the backend while Redis was away; each wrote, and
  // the earlier one landed last.
  KnownAdminState a{drained(1000, false), true, false};
  KnownAdminState b{drained(1001), true, false};
  AdminState redis = a.state;
  AdminMerge mb = mergeAdminState(b, redis);
  ASSERT_EQ(mb.drain, AdminWrite::kSet);  // b writes again
  redis = mb.next.state;
  AdminMerge ma = mergeAdminState(a, redis);
  EXPECT_EQ(ma.drain, AdminWrite::kNone);
  EXPECT_TRUE(ma.next.state.drain);
  EXPECT_FALSE(ma.next.drain_pending);
  AdminMerge mb2 = mergeAdminState(mb.next, redis);
  EXPECT_EQ(mb2.drain, AdminWrite::kNone);
  EXPECT_FALSE(mb2.next.drain_pending);
}

TEST(AdminMerge, NothingKnownNothingStored) {
  AdminMerge m = mergeAdminState(KnownAdminState{}, AdminState{});
  EXPECT_EQ(m.drain, AdminWrite::kNone);
  EXPECT_EQ(m.weight, AdminWrite::kNone);
  EXPECT_TRUE(m.next.state.empty());
}

}  // namespace
}  // namespace tether::balancer
