// libFuzzer target: the shared admin state as Redis hands it back
// (balancer/admin_state.h): parseAdminState on HGETALL's fields, which any
// Redis client may have written, parseAdminMessage on a channel payload,
// and mergeAdminState of what was read with what a tether knows.
//
// Input: byte 0 chooses what the tether knows (bit 0: a drain, 1: pending,
// 2: a weight, 3: pending, 4-7: the times); the rest is lines, each
// "field=value" (the first '='), also fed whole to parseAdminMessage.
// Checked: every aspect read is within its bounds (weight <= kMaxWeight,
// times > 0, no deadline when enabled), by is short and printable; a field
// that makes an aspect absent is reported; what was read prints back to
// itself; a message is an address or nothing; a merge takes Redis's aspect
// or keeps ours, writes only what we know, and sets only a pending one.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "balancer/admin_state.h"
#include "conf/config.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace tether::balancer;

void checkState(const AdminState& s) {
  if (s.has_drain) {
    FUZZ_CHECK(s.drain_ms > 0);
    FUZZ_CHECK(s.deadline_ms >= 0);
    if (!s.drain) FUZZ_CHECK(s.deadline_ms == 0);
    std::vector<std::string> errors;
    std::string field = drainField(s);
    AdminState again = parseAdminState({{"drain", field}}, &errors);
    FUZZ_CHECK(errors.empty());
    FUZZ_CHECK(again.sameDrain(s));
  }
  if (s.has_weight) {
    FUZZ_CHECK(s.weight <= tether::conf::kMaxWeight);
    FUZZ_CHECK(s.weight_ms > 0);
    std::vector<std::string> errors;
    std::string field = weightField(s);
    AdminState again = parseAdminState({{"weight", field}}, &errors);
    FUZZ_CHECK(errors.empty());
    FUZZ_CHECK(again.sameWeight(s));
  }
  FUZZ_CHECK(s.by.size() <= kMaxAdminBy);
  for (char c : s.by) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
  FUZZ_CHECK(!(s.has_drain && s.bad_drain));
  FUZZ_CHECK(!(s.has_weight && s.bad_weight));
}

// One aspect of a merge: written (then it is ours, and we had it), or
// Redis's taken (no longer pending), or neither had it.
void checkAspect(AdminWrite write, bool ours_has, bool ours_pending, bool theirs_has, bool theirs_bad,
                 bool next_is_ours, bool next_is_theirs, bool next_pending) {
  if (write != AdminWrite::kNone) {
    FUZZ_CHECK(ours_has && next_is_ours);
  } else if (theirs_has) {
    FUZZ_CHECK(next_is_theirs && !next_pending);
  } else {
    FUZZ_CHECK(!ours_has);
  }
  if (write == AdminWrite::kSet) FUZZ_CHECK(ours_pending || theirs_bad);
}

void checkMerge(const KnownAdminState& ours, const AdminState& theirs) {
  AdminMerge m = mergeAdminState(ours, theirs);
  const AdminState& n = m.next.state;
  checkState(n);
  checkAspect(m.drain, ours.state.has_drain, ours.drain_pending, theirs.has_drain, theirs.bad_drain,
              n.sameDrain(ours.state), n.sameDrain(theirs), m.next.drain_pending);
  checkAspect(m.weight, ours.state.has_weight, ours.weight_pending, theirs.has_weight, theirs.bad_weight,
              n.sameWeight(ours.state), n.sameWeight(theirs), m.next.weight_pending);
  // Merging again with what Redis then holds changes nothing more.
  if (m.drain == AdminWrite::kNone && m.weight == AdminWrite::kNone) {
    AdminMerge again = mergeAdminState(m.next, theirs);
    FUZZ_CHECK(again.drain == AdminWrite::kNone && again.weight == AdminWrite::kNone);
    FUZZ_CHECK(again.next.state.sameDrain(n) && again.next.state.sameWeight(n));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t opts = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  AdminFields fields;
  std::vector<std::string_view> lines;
  while (!in.empty()) {
    std::size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
    lines.push_back(line);
    std::size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      fields.emplace_back(line, std::string_view());
    } else {
      fields.emplace_back(line.substr(0, eq), line.substr(eq + 1));
    }
  }

  std::vector<std::string> errors;
  AdminState theirs = parseAdminState(fields, &errors);
  checkState(theirs);
  if (theirs.bad_drain || theirs.bad_weight) FUZZ_CHECK(!errors.empty());
  for (const std::string& e : errors) FUZZ_CHECK(!e.empty() && e.size() < 512);

  for (std::string_view line : lines) {
    auto address = parseAdminMessage(line);
    if (!address) continue;
    FUZZ_CHECK(*address == line);
    FUZZ_CHECK(!line.empty() && line.size() <= kMaxAdminAddress);
    FUZZ_CHECK(adminStateKey(line).size() == kAdminKeyPrefix.size() + line.size());
  }

  KnownAdminState ours;
  const std::int64_t t = 1 + (opts >> 4) * 100;
  if (opts & 1) {
    ours.state.has_drain = true;
    ours.state.drain = (opts >> 4) & 1;
    ours.state.drain_ms = t;
    ours.state.deadline_ms = ours.state.drain ? t + 5 : 0;
    ours.drain_pending = opts & 2;
  }
  if (opts & 4) {
    ours.state.has_weight = true;
    ours.state.weight = (opts >> 4) * 7;
    ours.state.weight_ms = t;
    ours.weight_pending = opts & 8;
  }
  checkMerge(ours, theirs);
  return 0;
}
