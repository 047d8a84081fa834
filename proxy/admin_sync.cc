#include "proxy/admin_sync.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "proxy/log.h"

namespace tether::proxy {
namespace {

constexpr std::int64_t kMaxBackoffMs = 5'000;
constexpr std::uint64_t kTickMs = 1'000;

std::string text(const redisReply* r) { return std::string(r->str, r->len); }

std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += "; ";
    out += p;
  }
  return out;
}

}  // namespace

struct AdminSync::Read {
  AdminSync* sync;
  std::string address;
};

// One transaction: its commands' callbacks share it; the last one frees it.
struct AdminSync::Write {
  AdminSync* sync;
  std::string address;
  int refs = 0;
  std::string error;  // the first command Redis refused to queue
};

AdminSync::AdminSync(uv_loop_t* loop, Options o, Locate locate, const balancer::BackendTable& backends,
                     Target* target)
    : loop_(loop), opts_(std::move(o)), locate_(std::move(locate)), backends_(backends), target_(target) {
  started_ms_ = static_cast<std::int64_t>(uv_now(loop_));
  uv_timer_init(loop_, &retry_timer_);
  retry_timer_.data = this;
  uv_timer_init(loop_, &tick_timer_);
  tick_timer_.data = this;
  // Only sentinels move the master; a plain URL's server stays where it is.
  if (!opts_.url.sentinels.empty())
    uv_timer_start(&tick_timer_, [](uv_timer_t* t) { static_cast<AdminSync*>(t->data)->tick(); }, kTickMs, kTickMs);
  connect();
}

AdminSync::~AdminSync() = default;

void AdminSync::connect() {
  if (closed_) return;
  std::optional<conf::HostPort> at = locate_();
  if (!at) return retry();  // the sentinels have not named the master yet
  if ((cmd_ || sub_) && !(*at == at_)) drop("the sentinels name another master: " + at->str());
  at_ = *at;
  RedisConnection::Options o;
  o.address = at_;
  o.tls = opts_.tls;
  o.username = opts_.url.username;
  o.password = opts_.url.password;
  o.db = opts_.url.db;
  o.expect_master = !opts_.url.sentinels.empty();
  o.connect_timeout_ms = opts_.connect_timeout_ms;
  o.reply_timeout_ms = opts_.reply_timeout_ms;
  if (!cmd_) cmd_ = RedisConnection::open(loop_, o, this, pool_);
  if (!sub_) sub_ = RedisConnection::open(loop_, o, this, pool_);
}

void AdminSync::retry() {
  if (closed_ || uv_is_active(reinterpret_cast<uv_handle_t*>(&retry_timer_))) return;
  backoff_ms_ = backoff_ms_ ? std::min<std::int64_t>(backoff_ms_ * 2, kMaxBackoffMs) : 100;
  uv_timer_start(&retry_timer_, [](uv_timer_t* t) { static_cast<AdminSync*>(t->data)->connect(); },
                 static_cast<std::uint64_t>(backoff_ms_), 0);
}

void AdminSync::tick() {
  if (closed_ || (!cmd_ && !sub_)) return;
  std::optional<conf::HostPort> at = locate_();
  if (at && !(*at == at_)) connect();
}

void AdminSync::drop(const std::string& why) {
  if (was_up_) {
    was_up_ = false;
    log::info("admin state: following the new master", {{"from", at_.str()}, {"why", why}});
  }
  cmd_ready_ = subscribed_ = false;
  // close() answers the commands in flight with no reply and tells no listener.
  if (cmd_) std::exchange(cmd_, nullptr)->close();
  if (sub_) std::exchange(sub_, nullptr)->close();
}

void AdminSync::becameUp() {
  was_up_ = true;
  backoff_ms_ = 0;
  std::uint64_t pending = 0;
  for (const auto& [address, e] : entries_) pending += e.known.drain_pending || e.known.weight_pending;
  log::info("admin state shared through redis",
            {{"address", at_.str()}, {"backends", static_cast<std::uint64_t>(backends_.size())},
             {"pending_changes", pending}});
  syncAll();
  if (!settled_) {
    // Replies come in order: once this one is in, so is every first read.
    auto synced = [](void* priv, redisReply*) {
      auto* s = static_cast<AdminSync*>(priv);
      if (!s->closed_) s->settled_ = true;
    };
    if (!cmd_->command(synced, this, "PING")) settled_ = true;
  }
}

bool AdminSync::settled() const {
  return settled_ || static_cast<std::int64_t>(uv_now(loop_)) - started_ms_ >= opts_.connect_timeout_ms;
}

void AdminSync::becameDown(const std::string& why) {
  if (!was_up_) return;
  was_up_ = false;
  log::warn("admin state: redis down, every backend keeps its last state",
            {{"address", at_.str()}, {"error", why}});
}

void AdminSync::syncAll() {
  std::size_t n = backends_.size();
  for (std::size_t i = 0; i < n; ++i) read(backends_.at(i)->name);
}

void AdminSync::read(const std::string& address) {
  if (!cmd_ready_) return;
  Entry& e = entries_[address];
  if (e.reading) {
    e.reread = true;
    return;
  }
  std::string key = balancer::adminStateKey(address);
  auto* r = new Read{this, address};
  auto done = [](void* priv, redisReply* reply) {
    auto* r = static_cast<Read*>(priv);
    AdminSync* s = r->sync;
    std::string address = std::move(r->address);
    delete r;
    s->onRead(address, reply);
  };
  if (!cmd_->command(done, r, "HGETALL %b", key.data(), key.size())) {
    delete r;
    return;
  }
  e.reading = true;
}

void AdminSync::onRead(const std::string& address, redisReply* reply) {
  Entry& e = entries_[address];
  e.reading = false;
  if (!reply || closed_) {
    e.reread = false;  // the connection went: the next one reads everything
    return;
  }
  if (e.writes > 0) {
    // It may have been read before our write landed: once more after it.
    e.reread = true;
    return;
  }
  const std::string key = balancer::adminStateKey(address);
  balancer::AdminFields fields;
  std::string unreadable;
  if (reply->type == REDIS_REPLY_ERROR) {
    unreadable = text(reply);
  } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) {
    unreadable = "not a hash";
  } else {
    for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
      const redisReply* k = reply->element[i];
      const redisReply* v = reply->element[i + 1];
      if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
        unreadable = "not a hash";
        break;
      }
      fields.emplace_back(std::string_view(k->str, k->len), std::string_view(v->str, v->len));
    }
  }
  if (!unreadable.empty()) {
    log::warn("admin state in redis unreadable: ignored, the backend keeps its last state",
              {{"backend", address}, {"key", key}, {"error", unreadable}});
  } else if (balancer::Backend* b = backends_.findByName(address)) {
    std::vector<std::string> errors;
    balancer::AdminState theirs = balancer::parseAdminState(fields, &errors);
    if (!errors.empty()) {
      log::warn("admin state in redis malformed: those fields ignored",
                {{"backend", address}, {"key", key}, {"error", joined(errors)}});
    }
    balancer::AdminMerge m = balancer::mergeAdminState(e.known, theirs);
    balancer::AdminState before = e.known.state;
    const bool pending = e.known.drain_pending || e.known.weight_pending;
    e.known = m.next;
    if (!before.sameDrain(e.known.state) || !before.sameWeight(e.known.state))
      target_->applySharedAdmin(b, e.known.state, before);
    using balancer::AdminWrite;
    if (m.drain != AdminWrite::kNone || m.weight != AdminWrite::kNone) {
      if (!pending) log::info("admin state written back to redis, which had lost it", {{"backend", address}});
      write(address, m.drain, m.weight);
    }
  }
  if (e.reread && e.writes == 0) {
    e.reread = false;
    read(address);
  }
}

bool AdminSync::changed(balancer::Backend* b, const balancer::AdminState& s, bool drain, bool weight) {
  if (closed_) return false;
  Entry& e = entries_[b->name];
  balancer::AdminState& k = e.known.state;
  if (drain) {
    k.has_drain = s.has_drain;
    k.drain = s.drain;
    k.drain_ms = s.drain_ms;
    k.deadline_ms = s.deadline_ms;
    e.known.drain_pending = true;
  }
  if (weight) {
    k.has_weight = s.has_weight;
    k.weight = s.weight;
    k.weight_ms = s.weight_ms;
    e.known.weight_pending = true;
  }
  k.by = opts_.by;
  if (!cmd_ready_) {
    log::info("admin state: redis down, the change is written once it is back", {{"backend", b->name}});
    return false;
  }
  using balancer::AdminWrite;
  write(b->name, drain ? AdminWrite::kSet : AdminWrite::kNone, weight ? AdminWrite::kSet : AdminWrite::kNone);
  return up();  // without the subscription, written but not known to reach the others
}

void AdminSync::write(const std::string& address, balancer::AdminWrite drain, balancer::AdminWrite weight) {
  using balancer::AdminWrite;
  if (!cmd_ready_) return;
  Entry& e = entries_[address];
  const balancer::AdminState& k = e.known.state;
  const std::string key = balancer::adminStateKey(address);
  std::vector<std::vector<std::string>> commands{{"MULTI"}};
  std::vector<std::string> set{"HSET", key};
  if (drain == AdminWrite::kSet && k.has_drain) set.insert(set.end(), {"drain", balancer::drainField(k)});
  if (weight == AdminWrite::kSet && k.has_weight) set.insert(set.end(), {"weight", balancer::weightField(k)});
  if (set.size() > 2) {
    set.insert(set.end(), {"by", k.by.substr(0, balancer::kMaxAdminBy)});
    commands.push_back(std::move(set));
  }
  if (drain == AdminWrite::kRestore && k.has_drain) commands.push_back({"HSETNX", key, "drain", balancer::drainField(k)});
  if (weight == AdminWrite::kRestore && k.has_weight)
    commands.push_back({"HSETNX", key, "weight", balancer::weightField(k)});
  if (commands.size() == 1) return;
  commands.push_back({"HINCRBY", key, "version", "1"});
  commands.push_back({"PUBLISH", std::string(balancer::kAdminChannel), address});

  auto* w = new Write{this, address};
  auto queued = [](void* priv, redisReply* reply) {
    auto* w = static_cast<Write*>(priv);
    if (reply && reply->type == REDIS_REPLY_ERROR && w->error.empty()) w->error = text(reply);
    if (--w->refs == 0) w->sync->onWritten(*w, nullptr);
  };
  auto exec = [](void* priv, redisReply* reply) {
    auto* w = static_cast<Write*>(priv);
    --w->refs;
    w->sync->onWritten(*w, reply);
  };
  bool queued_all = true;
  for (const auto& c : commands) {
    if (!(queued_all = cmd_->commandArgv(queued, w, c))) break;
    ++w->refs;
  }
  if (queued_all && cmd_->commandArgv(exec, w, {"EXEC"})) ++w->refs;
  if (w->refs == 0) {
    delete w;
    return;
  }
  ++e.writes;
}

// With a reply: EXEC's. Frees w once no callback of it is left.
void AdminSync::onWritten(Write& w, redisReply* reply) {
  Entry& e = entries_[w.address];
  if (reply && !closed_) {
    std::string refused;
    if (reply->type == REDIS_REPLY_ERROR) {
      refused = w.error.empty() ? text(reply) : w.error;
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2) {
      for (std::size_t i = 0; i < reply->elements && refused.empty(); ++i)
        if (reply->element[i]->type == REDIS_REPLY_ERROR) refused = text(reply->element[i]);
    } else {
      refused = "unexpected answer to EXEC";
    }
    if (!refused.empty()) {
      log::warn("admin state not written to redis: kept here, written again on reconnect",
                {{"backend", w.address}, {"error", refused}});
    } else {
      const redisReply* version = reply->element[reply->elements - 2];  // HINCRBY's, before PUBLISH's
      if (version->type == REDIS_REPLY_INTEGER) e.known.state.version = static_cast<std::uint64_t>(version->integer);
      e.reread = true;  // a pending change stays so until read back
    }
  }
  if (w.refs > 0) return;
  const std::string address = std::move(w.address);
  delete &w;
  if (--e.writes == 0 && e.reread && !closed_) {
    e.reread = false;
    read(address);
  }
}

void AdminSync::added(balancer::Backend* b) {
  if (up()) read(b->name);
}

const balancer::KnownAdminState* AdminSync::known(const std::string& address) const {
  auto it = entries_.find(address);
  if (it == entries_.end() || it->second.known.state.empty()) return nullptr;
  return &it->second.known;
}

void AdminSync::onRedisReady(RedisConnection* c) {
  if (c == cmd_) {
    cmd_ready_ = true;
    if (subscribed_) becameUp();
  } else if (c == sub_) {
    if (!sub_->subscribe(std::string(balancer::kAdminChannel), onSubscribed, this)) {
      std::exchange(sub_, nullptr)->close();
      retry();
    }
  }
}

void AdminSync::onSubscribed(void* priv, redisReply* reply) {
  auto* s = static_cast<AdminSync*>(priv);
  if (!reply || s->closed_ || !s->sub_) return;  // the connection went: onRedisClosed goes on
  if (reply->type == REDIS_REPLY_ERROR) {
    // e.g. NOPERM: an ACL user without SUBSCRIBE or the channel. Tried
    // again with the backoff; the same refusal is told once.
    std::string why = text(reply);
    const std::string channel(balancer::kAdminChannel);
    if (why != s->refusal_) {
      log::warn("admin state: redis refused the subscription; changes made elsewhere are not seen",
                {{"address", s->at_.str()}, {"channel", channel}, {"error", why}});
    } else {
      log::debug("admin state: redis refused the subscription", {{"channel", channel}, {"error", why}});
    }
    s->refusal_ = std::move(why);
    s->settled_ = true;  // nothing to wait for: the configuration's state applies
    std::exchange(s->sub_, nullptr)->close();
    return s->retry();
  }
  s->subscribed_ = true;
  s->refusal_.clear();
  if (s->cmd_ready_) s->becameUp();
}

void AdminSync::onRedisClosed(RedisConnection* c, const RedisFailure& f) {
  const bool was = up();
  if (c == cmd_) {
    cmd_ = nullptr;
    cmd_ready_ = false;
  } else if (c == sub_) {
    sub_ = nullptr;
    subscribed_ = false;
  } else {
    return;
  }
  if (was) {
    becameDown(f.why);
  } else {
    log::debug("admin state: redis connect failed", {{"address", at_.str()}, {"error", f.why}});
  }
  settled_ = true;  // down at the start: the configuration's state until it answers
  retry();
}

void AdminSync::onRedisPush(RedisConnection* c, redisReply* reply) {
  if (c != sub_ || closed_) return;
  // ["message", channel, payload]
  const redisReply* channel = reply->element[1];
  const redisReply* payload = reply->element[reply->elements - 1];
  if (channel->type != REDIS_REPLY_STRING || std::string_view(channel->str, channel->len) != balancer::kAdminChannel)
    return;
  std::optional<std::string_view> address;
  if (payload->type == REDIS_REPLY_STRING) address = balancer::parseAdminMessage(std::string_view(payload->str, payload->len));
  if (!address) {
    log::warn("admin state: a message that names no backend address: ignored",
              {{"channel", std::string(balancer::kAdminChannel)},
               {"bytes", static_cast<std::uint64_t>(payload->type == REDIS_REPLY_STRING ? payload->len : 0)}});
    return;
  }
  std::string name(*address);
  if (!backends_.findByName(name)) {
    log::info("admin state: a change for a backend not configured here: ignored", {{"backend", name}});
    return;
  }
  read(name);
}

void AdminSync::close() {
  if (closed_) return;
  closed_ = true;
  cmd_ready_ = subscribed_ = false;
  uv_timer_stop(&retry_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&retry_timer_), nullptr);
  uv_timer_stop(&tick_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_timer_), nullptr);
  if (cmd_) std::exchange(cmd_, nullptr)->close();
  if (sub_) std::exchange(sub_, nullptr)->close();
}

}  // namespace tether::proxy
