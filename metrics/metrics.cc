// Cells, bucket sets and the backend table. The exposition is in exposition.cc.
#include "metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "metrics/backend_cells.h"

namespace tether::metrics {

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds.size() + 1)) {
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && !(bounds_[i - 1] < bounds_[i]))) {
      throw std::invalid_argument(
          "metrics::Histogram: bounds must be finite and strictly ascending");
    }
    bounds_ns_.push_back(static_cast<std::uint64_t>(std::llround(std::max(0.0, std::min(bounds_[i] * 1e9, 1e18)))));
  }
}

void Histogram::observeMs(std::int64_t ms) {
  std::uint64_t ns = ms > 0 ? static_cast<std::uint64_t>(std::min<std::int64_t>(ms, 1'000'000'000'000)) * 1'000'000 : 0;
  // Most durations fall in the first buckets: a linear scan beats a binary search.
  std::size_t i = 0;
  while (i < bounds_ns_.size() && ns > bounds_ns_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
}

void Histogram::observe(double seconds) {
  // A clock step can make a duration negative; NaN must not poison the sum.
  if (!(seconds > 0)) seconds = 0;
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), seconds);
  buckets_[static_cast<std::size_t>(it - bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
  // Capped (about 31 years) so that the conversion stays defined for +Inf.
  constexpr double kMaxNs = 1e18;
  double ns = std::min(seconds * 1e9, kMaxNs);
  sum_ns_.fetch_add(static_cast<std::uint64_t>(std::llround(ns)), std::memory_order_relaxed);
}

std::uint64_t Histogram::bucketCount(std::size_t i) const {
  return i <= bounds_.size() ? buckets_[i].load(std::memory_order_relaxed) : 0;
}

std::uint64_t Histogram::count() const {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i)
    n += buckets_[i].load(std::memory_order_relaxed);
  return n;
}

double Histogram::sum() const {
  return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
}

const std::vector<double>& requestDurationBuckets() {
  static const std::vector<double> b{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,    2.5, 5,
                                     10,    30,   60,    120,  300, 600,  1200, 1800, 3600};
  return b;
}

const std::vector<double>& firstByteBuckets() {
  static const std::vector<double> b{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,   2.5,
                                     5,     10,    30,   60,    120,  300, 600,  1200, 1800};
  return b;
}

const std::vector<double>& connectBuckets() {
  static const std::vector<double> b{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return b;
}

const std::vector<double>& websocketDurationBuckets() {
  static const std::vector<double> b{1,    5,    15,   30,    60,    300,   900,
                                     1800, 3600, 7200, 14400, 28800, 43200, 86400};
  return b;
}

const std::vector<double>& storeBuckets() {
  static const std::vector<double> b{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,  0.05,    0.1,    0.25,  0.5,    1};
  return b;
}

namespace {
constexpr const char* kMethodNames[kMethodCount] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER"};

int methodIndex(Method m) {
  int i = static_cast<int>(m);
  return i >= 0 && i < kMethodCount ? i : static_cast<int>(Method::kOther);
}
}  // namespace

Method methodFromString(std::string_view m) {
  for (int i = 0; i < kMethodCount; ++i) {
    if (m == kMethodNames[i] && static_cast<Method>(i) != Method::kOther)
      return static_cast<Method>(i);
  }
  return Method::kOther;
}

const char* toString(Method m) { return kMethodNames[methodIndex(m)]; }

BackendMetrics::BackendMetrics(std::string name)
    : name_(std::move(name)), impl_(std::make_unique<Impl>()) {}

BackendMetrics::~BackendMetrics() = default;

void BackendMetrics::request(Method m, int code) {
  lazyRow(impl_->requests[methodIndex(m)])[statusSlot(code)].fetch_add(1,
                                                                       std::memory_order_relaxed);
}

void BackendMetrics::websocketUpgrade(int code) {
  lazyRow(impl_->upgrades)[statusSlot(code)].fetch_add(1, std::memory_order_relaxed);
}

void BackendMetrics::websocketClose(int code, ClosedBy by) {
  int b = static_cast<int>(by);
  if (b < 0 || b >= kClosedByCount) b = static_cast<int>(ClosedBy::kTether);
  lazyRow(impl_->closes[b])[closeSlot(code)].fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t BackendMetrics::requestCount(Method m, int code) const {
  return peek(impl_->requests[methodIndex(m)], statusSlot(code));
}

std::uint64_t BackendMetrics::websocketUpgradeCount(int code) const {
  return peek(impl_->upgrades, statusSlot(code));
}

std::uint64_t BackendMetrics::websocketCloseCount(int code, ClosedBy by) const {
  int b = static_cast<int>(by);
  if (b < 0 || b >= kClosedByCount) return 0;
  return peek(impl_->closes[b], closeSlot(code));
}

Metrics::Metrics() {
  store_seconds_[static_cast<int>(StoreOp::kGet)] = std::make_unique<Histogram>(storeBuckets());
  store_seconds_[static_cast<int>(StoreOp::kSet)] = std::make_unique<Histogram>(storeBuckets());
  store_seconds_[static_cast<int>(StoreOp::kRefresh)] = std::make_unique<Histogram>(storeBuckets());
}

Metrics::~Metrics() = default;

BackendMetrics& Metrics::addBackend(std::uint32_t id, const std::string& name) {
  if (id >= kMaxBackends) {
    throw std::length_error("metrics: backend id " + std::to_string(id) +
                            " >= " + std::to_string(kMaxBackends));
  }
  BackendMetrics* existing = backends_[id].load(std::memory_order_acquire);
  if (existing != nullptr && existing->name() == name) return *existing;
  owned_.push_back(std::make_unique<BackendMetrics>(name));
  BackendMetrics* fresh = owned_.back().get();
  backends_[id].store(fresh, std::memory_order_release);
  if (backend_count_.load(std::memory_order_relaxed) <= id) {
    backend_count_.store(id + 1, std::memory_order_release);
  }
  return *fresh;
}

std::vector<const BackendMetrics*> Metrics::backends() const {
  std::vector<const BackendMetrics*> out;
  std::size_t n = backend_count_.load(std::memory_order_acquire);
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (const BackendMetrics* b = backends_[i].load(std::memory_order_acquire)) out.push_back(b);
  }
  return out;
}

}  // namespace tether::metrics
