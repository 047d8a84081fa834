// What every loop of the process shares: the current configuration, the
// backends and the metrics.
//
// Created by Server on the main thread before any worker starts; outlives
// every worker. The configuration pointer is swapped by reload on the main
// loop; each worker takes the new one between callbacks when told
// (Worker::applyConfig). What a session keeps across callbacks (affinity
// plans) is shared-owned, so a reload never frees it under a request.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "balancer/backend.h"
#include "conf/config.h"
#include "metrics/metrics.h"
#include "proxy/pin_store.h"

namespace tether::proxy {

struct Runtime {
  balancer::BackendTable backends;
  metrics::Metrics metrics;
  std::atomic<std::uint64_t> downstream_connections{0};  // every worker's, for max_connections
  std::atomic<bool> stopping{false};
  std::atomic<bool> listening{false};
  std::unique_ptr<SharedMemoryPins> memory_pins;  // set before any worker starts

  conf::ConfigPtr config() const {
    std::lock_guard<std::mutex> lock(mu_);
    return config_;
  }
  void setConfig(conf::ConfigPtr c) {
    std::lock_guard<std::mutex> lock(mu_);
    config_ = std::move(c);
  }

 private:
  mutable std::mutex mu_;
  conf::ConfigPtr config_;
};

}  // namespace tether::proxy
