// What every loop of the process shares: the current configuration, the
// listeners' certificates, the backends and the metrics.
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
#include "proxy/access_log.h"
#include "proxy/pin_store.h"
#include "proxy/io/tls.h"
#include "proxy/io/tls_client.h"

namespace tether::proxy {

struct Runtime {
  balancer::BackendTable backends;
  metrics::Metrics metrics;
  std::atomic<std::uint64_t> downstream_connections{0};  // every worker's, for max_connections
  std::atomic<bool> stopping{false};
  std::atomic<bool> listening{false};
  std::unique_ptr<SharedMemoryPins> memory_pins;  // set before any worker starts
  AccessLogFile access_log;  // where every worker's AccessLog writes (access_log.h)

  conf::ConfigPtr config() const {
    std::lock_guard<std::mutex> lock(mu_);
    return config_;
  }
  void setConfig(conf::ConfigPtr c) {
    std::lock_guard<std::mutex> lock(mu_);
    config_ = std::move(c);
  }
  // The certificates of listener `index`; nullptr for a plain one. A reload
  // swaps them; a connection keeps the ones it started with.
  std::shared_ptr<const TlsContext> tls(std::size_t index) const {
    std::lock_guard<std::mutex> lock(mu_);
    return index < tls_.size() ? tls_[index] : nullptr;
  }
  void setTls(std::vector<std::shared_ptr<const TlsContext>> t) {
    std::lock_guard<std::mutex> lock(mu_);
    tls_ = std::move(t);
  }
  // The TLS of configured backend `index` (BackendConf order); nullptr for
  // an http:// one. Swapped by a reload with the configuration; a connection
  // keeps the one it was made with.
  std::shared_ptr<const TlsClientContext> backendTls(std::size_t index) const {
    std::lock_guard<std::mutex> lock(mu_);
    return index < backend_tls_.size() ? backend_tls_[index] : nullptr;
  }
  void setBackendTls(std::vector<std::shared_ptr<const TlsClientContext>> t) {
    std::lock_guard<std::mutex> lock(mu_);
    backend_tls_ = std::move(t);
  }

 private:
  mutable std::mutex mu_;
  conf::ConfigPtr config_;
  std::vector<std::shared_ptr<const TlsContext>> tls_;
  std::vector<std::shared_ptr<const TlsClientContext>> backend_tls_;
};

}  // namespace tether::proxy
