// A write request from the worker's pool (Worker::takeWriteReq): a libuv
// write and who to tell when it completes. The owner clears `ctx` when it
// goes first, so a late completion only returns the request to the pool.
#pragma once

#include <uv.h>

namespace tether::proxy {

struct WriteReq {
  uv_write_t req;
  void (*done)(void* ctx, int status) = nullptr;
  void* ctx = nullptr;
  WriteReq* next_free = nullptr;
};

}  // namespace tether::proxy
