// Cells: histograms, counters, the lazily allocated label rows, the backend table.
#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

namespace tether::metrics {
namespace {

TEST(Histogram, PlacesValuesInTheFirstBucketWhoseBoundIsNotBelow) {
  Histogram h({0.1, 1, 10});
  h.observe(0.05);   // bucket 0
  h.observe(0.1);    // le is inclusive: bucket 0
  h.observe(0.11);   // bucket 1
  h.observe(1);      // bucket 1
  h.observe(9.99);   // bucket 2
  h.observe(10.01);  // +Inf
  h.observe(1e9);    // +Inf
  EXPECT_EQ(h.bucketCount(0), 2u);
  EXPECT_EQ(h.bucketCount(1), 2u);
  EXPECT_EQ(h.bucketCount(2), 1u);
  EXPECT_EQ(h.bucketCount(3), 2u);
  EXPECT_EQ(h.bucketCount(4), 0u);  // out of range reads 0
  EXPECT_EQ(h.count(), 7u);
  EXPECT_NEAR(h.sum(), 0.05 + 0.1 + 0.11 + 1 + 9.99 + 10.01 + 1e9, 1e-6);
}

TEST(Histogram, NegativeAndNanCountAsZeroAndInfinityGoesToInf) {
  Histogram h({1});
  h.observe(-3);
  h.observe(std::numeric_limits<double>::quiet_NaN());
  h.observe(std::numeric_limits<double>::infinity());
  EXPECT_EQ(h.bucketCount(0), 2u);
  EXPECT_EQ(h.bucketCount(1), 1u);
  EXPECT_EQ(h.count(), 3u);
  EXPECT_TRUE(std::isfinite(h.sum()));
}

TEST(Histogram, SumHasNanosecondResolution) {
  Histogram h({1});
  h.observe(0.000000001);
  h.observe(0.25);
  EXPECT_DOUBLE_EQ(h.sum(), 0.250000001);
}

TEST(Histogram, ObserveMsAgreesWithObserve) {
  // Sub-millisecond bounds too (connect and store buckets start at 0.1 ms).
  const std::vector<double> bounds{0.0001, 0.0005, 0.001, 0.005, 0.01, 1, 30};
  Histogram by_ms(bounds), by_seconds(bounds);
  for (std::int64_t ms : {-5, 0, 1, 2, 5, 6, 10, 11, 999, 1000, 1001, 30000, 30001, 86400000}) {
    by_ms.observeMs(ms);
    by_seconds.observe(static_cast<double>(ms) / 1000.0);
  }
  for (std::size_t i = 0; i <= bounds.size(); ++i)
    EXPECT_EQ(by_ms.bucketCount(i), by_seconds.bucketCount(i)) << "bucket " << i;
  EXPECT_DOUBLE_EQ(by_ms.sum(), by_seconds.sum());
  EXPECT_EQ(by_ms.count(), 14u);
}

TEST(Histogram, RejectsUnsortedBounds) {
  EXPECT_THROW(Histogram({1, 0.5}), std::invalid_argument);
  EXPECT_THROW(Histogram({1, 1}), std::invalid_argument);
  EXPECT_THROW(Histogram({std::numeric_limits<double>::infinity()}), std::invalid_argument);
}

TEST(Buckets, MatchTheSpecRanges) {
  struct Case {
    const std::vector<double>& b;
    double first, last;
  } cases[] = {{requestDurationBuckets(), 0.005, 3600},
               {firstByteBuckets(), 0.001, 1800},
               {connectBuckets(), 0.0005, 10},
               {websocketDurationBuckets(), 1, 86400},
               {storeBuckets(), 0.0001, 1}};
  for (const auto& c : cases) {
    ASSERT_FALSE(c.b.empty());
    EXPECT_DOUBLE_EQ(c.b.front(), c.first);
    EXPECT_DOUBLE_EQ(c.b.back(), c.last);
    for (std::size_t i = 1; i < c.b.size(); ++i) EXPECT_LT(c.b[i - 1], c.b[i]);
    EXPECT_LE(c.b.size(), 20u);
  }
}

TEST(Counter, IncrementsAndGaugeMovesBothWays) {
  Counter c;
  c.inc();
  c.inc(41);
  EXPECT_EQ(c.value(), 42u);
  Gauge g;
  g.inc();
  g.inc();
  g.dec();
  g.add(-5);
  EXPECT_EQ(g.value(), -4);
  g.set(7);
  EXPECT_EQ(g.value(), 7);
}

TEST(Method, RoundTripsKnownNamesAndFoldsTheRestIntoOther) {
  for (int i = 0; i < static_cast<int>(Method::kCount); ++i) {
    auto m = static_cast<Method>(i);
    EXPECT_EQ(methodFromString(toString(m)), m) << toString(m);
  }
  EXPECT_EQ(methodFromString("get"), Method::kOther);  // methods are case-sensitive
  EXPECT_EQ(methodFromString("PROPFIND"), Method::kOther);
  EXPECT_EQ(methodFromString(""), Method::kOther);
  EXPECT_EQ(methodFromString("OTHER"), Method::kOther);
  EXPECT_STREQ(toString(Method::kCount), "OTHER");
  EXPECT_STREQ(toString(Method::kPatch), "PATCH");
}

TEST(BackendMetrics, CountsRequestsPerMethodAndCode) {
  BackendMetrics b("10.0.0.1:8080");
  EXPECT_EQ(b.requestCount(Method::kGet, 200), 0u);  // reading allocates nothing and reads 0
  b.request(Method::kGet, 200);
  b.request(Method::kGet, 200);
  b.request(Method::kPost, 200);
  b.request(Method::kGet, 404);
  EXPECT_EQ(b.requestCount(Method::kGet, 200), 2u);
  EXPECT_EQ(b.requestCount(Method::kPost, 200), 1u);
  EXPECT_EQ(b.requestCount(Method::kGet, 404), 1u);
  EXPECT_EQ(b.requestCount(Method::kPut, 200), 0u);
}

TEST(BackendMetrics, ClampsUnusualCodesAndMethods) {
  BackendMetrics b("a:1");
  b.request(Method::kGet, 100);
  b.request(Method::kGet, 599);
  b.request(Method::kGet, 99);
  b.request(Method::kGet, 600);
  b.request(Method::kGet, -1);
  b.request(Method::kGet, 0);
  b.request(Method::kCount, 200);  // not a real method: OTHER
  b.request(methodFromString("MKCOL"), 207);
  EXPECT_EQ(b.requestCount(Method::kGet, 100), 1u);
  EXPECT_EQ(b.requestCount(Method::kGet, 599), 1u);
  EXPECT_EQ(b.requestCount(Method::kGet, 0), 4u);
  EXPECT_EQ(b.requestCount(Method::kGet, 12345), 4u);  // same slot as 0
  EXPECT_EQ(b.requestCount(Method::kOther, 200), 1u);
  EXPECT_EQ(b.requestCount(Method::kOther, 207), 1u);
}

TEST(BackendMetrics, CountsWebsocketUpgradesAndCloses) {
  BackendMetrics b("a:1");
  b.websocketUpgrade(101);
  b.websocketUpgrade(101);
  b.websocketUpgrade(503);
  b.websocketUpgrade(7);
  EXPECT_EQ(b.websocketUpgradeCount(101), 2u);
  EXPECT_EQ(b.websocketUpgradeCount(503), 1u);
  EXPECT_EQ(b.websocketUpgradeCount(0), 1u);

  b.websocketClose(1000, ClosedBy::kClient);
  b.websocketClose(1001, ClosedBy::kTether);
  b.websocketClose(1015, ClosedBy::kBackend);
  b.websocketClose(4999, ClosedBy::kBackend);
  b.websocketClose(3000, ClosedBy::kBackend);
  b.websocketClose(0, ClosedBy::kClient);
  b.websocketClose(1016, ClosedBy::kClient);  // other
  b.websocketClose(2000, ClosedBy::kClient);  // other
  b.websocketClose(5000, ClosedBy::kClient);  // other
  EXPECT_EQ(b.websocketCloseCount(1000, ClosedBy::kClient), 1u);
  EXPECT_EQ(b.websocketCloseCount(1000, ClosedBy::kBackend), 0u);
  EXPECT_EQ(b.websocketCloseCount(1001, ClosedBy::kTether), 1u);
  EXPECT_EQ(b.websocketCloseCount(1015, ClosedBy::kBackend), 1u);
  EXPECT_EQ(b.websocketCloseCount(4999, ClosedBy::kBackend), 1u);
  EXPECT_EQ(b.websocketCloseCount(3000, ClosedBy::kBackend), 1u);
  EXPECT_EQ(b.websocketCloseCount(0, ClosedBy::kClient), 1u);
  EXPECT_EQ(b.websocketCloseCount(1016, ClosedBy::kClient), 3u);
}

TEST(BackendMetrics, ConcurrentIncrementsFromFourThreadsSumExactly) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100000;
  Metrics m;
  BackendMetrics& b = m.addBackend(0, "a:1");
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        // Every thread races to allocate the same rows on its first call.
        b.request(Method::kGet, 200);
        b.request(static_cast<Method>(i % static_cast<int>(Method::kCount)), 500);
        b.websocketUpgrade(101);
        b.websocketClose(1000, ClosedBy::kClient);
        b.bytes[static_cast<int>(Direction::kDownstream)].inc(3);
        b.websocket_active.inc();
        b.request_duration.observe(0.3);
        m.downstream_total.inc();
        m.affinityLookup(AffinityResult::kHit);
        m.storeSeconds(StoreOp::kGet).observe(0.001);
      }
    });
  }
  for (auto& t : threads) t.join();
  constexpr std::uint64_t kTotal = std::uint64_t{kThreads} * kPerThread;
  EXPECT_EQ(b.requestCount(Method::kGet, 200), kTotal);
  std::uint64_t five_hundreds = 0;
  for (int i = 0; i < static_cast<int>(Method::kCount); ++i) {
    five_hundreds += b.requestCount(static_cast<Method>(i), 500);
  }
  EXPECT_EQ(five_hundreds, kTotal);
  EXPECT_EQ(b.websocketUpgradeCount(101), kTotal);
  EXPECT_EQ(b.websocketCloseCount(1000, ClosedBy::kClient), kTotal);
  EXPECT_EQ(b.bytes[0].value(), 3 * kTotal);
  EXPECT_EQ(b.websocket_active.value(), static_cast<std::int64_t>(kTotal));
  EXPECT_EQ(b.request_duration.count(), kTotal);
  EXPECT_EQ(b.request_duration.bucketCount(6), kTotal);  // 0.3 -> le 0.5
  EXPECT_NEAR(b.request_duration.sum(), 0.3 * kTotal, 1e-6);
  EXPECT_EQ(m.downstream_total.value(), kTotal);
  EXPECT_EQ(m.affinityCount(AffinityResult::kHit), kTotal);
  EXPECT_EQ(m.storeSeconds(StoreOp::kGet).count(), kTotal);
}

TEST(Metrics, AddBackendIsIdempotentForTheSameNameAndReplacesOnRename) {
  Metrics m;
  BackendMetrics& a = m.addBackend(0, "a:1");
  a.retries.inc();
  EXPECT_EQ(&m.addBackend(0, "a:1"), &a);
  EXPECT_EQ(&m.backend(0), &a);
  m.addBackend(2, "c:3");
  auto list = m.backends();
  ASSERT_EQ(list.size(), 2u);  // id 1 is a gap
  EXPECT_EQ(list[0]->name(), "a:1");
  EXPECT_EQ(list[1]->name(), "c:3");

  BackendMetrics& renamed = m.addBackend(0, "b:2");
  EXPECT_NE(&renamed, &a);
  EXPECT_EQ(renamed.retries.value(), 0u);
  EXPECT_EQ(a.retries.value(), 1u);  // the old entry stays valid for workers holding it
  EXPECT_EQ(m.backends()[0]->name(), "b:2");
}

TEST(Metrics, RejectsBackendIdsBeyondTheTable) {
  Metrics m;
  EXPECT_THROW(m.addBackend(Metrics::kMaxBackends, "x:1"), std::length_error);
  EXPECT_NO_THROW(m.addBackend(Metrics::kMaxBackends - 1, "x:1"));
  EXPECT_EQ(m.backends().size(), 1u);
}

}  // namespace
}  // namespace tether::metrics
