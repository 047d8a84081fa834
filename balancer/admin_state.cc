#include "balancer/admin_state.h"

#include "conf/config.h"

namespace tether::balancer {
namespace {

// Decimal digits only, no sign, at most 18 of them (fits int64 with room):
// what tether writes, and nothing that strtoll would read more leniently.
std::optional<std::int64_t> decimal(std::string_view v) {
  if (v.empty() || v.size() > 18) return std::nullopt;
  std::int64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return n;
}

// For error messages: at most 40 bytes of a hostile value, controls escaped.
std::string shown(std::string_view v) {
  std::string out = "\"";
  for (std::size_t i = 0; i < v.size() && i < 40; ++i) {
    unsigned char c = static_cast<unsigned char>(v[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (v.size() > 40) out += "...";
  return out + "\"";
}

bool addressByte(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' || c == ':' ||
         c == '[' || c == ']';
}

}  // namespace

std::string adminStateKey(std::string_view address) {
  std::string k(kAdminKeyPrefix);
  k.append(address);
  return k;
}

std::optional<std::string_view> parseAdminMessage(std::string_view payload) {
  if (payload.empty() || payload.size() > kMaxAdminAddress) return std::nullopt;
  for (char c : payload)
    if (!addressByte(c)) return std::nullopt;
  return payload;
}

namespace {

// Splits "a b c" into exactly n words separated by one space each.
bool words(std::string_view v, std::size_t n, std::string_view* out) {
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t sp = i + 1 < n ? v.find(' ') : std::string_view::npos;
    if (i + 1 < n && sp == std::string_view::npos) return false;
    out[i] = v.substr(0, sp);
    if (i + 1 < n) v.remove_prefix(sp + 1);
  }
  return v.find(' ') == std::string_view::npos;
}

}  // namespace

AdminState parseAdminState(const AdminFields& fields, std::vector<std::string>* errors) {
  // Each field once: a hash has no duplicates, so a second one means the
  // bytes are not what tether wrote.
  std::optional<std::string_view> drain, weight, version, by;
  struct Slot {
    std::string_view name;
    std::optional<std::string_view>* value;
    bool twice = false;
  };
  Slot slots[] = {{"drain", &drain}, {"weight", &weight}, {"version", &version}, {"by", &by}};
  for (const auto& [name, value] : fields) {
    for (Slot& s : slots) {
      if (name != s.name) continue;
      if (s.value->has_value() && !s.twice) {
        errors->push_back(std::string(name) + ": given twice");
        s.twice = true;
      }
      *s.value = value;
    }
  }
  for (const Slot& s : slots)
    if (s.twice) s.value->reset();

  AdminState st;
  if (version) {
    if (auto v = decimal(*version)) {
      st.version = static_cast<std::uint64_t>(*v);
    } else {
      errors->push_back("version: not a count: " + shown(*version));
    }
  }
  if (by) {
    bool printable = by->size() <= kMaxAdminBy;
    for (char c : *by)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) printable = false;
    if (printable) {
      st.by.assign(*by);
    } else {
      errors->push_back("by: not a short printable text: " + shown(*by));
    }
  }
  if (drain) {
    std::string_view w[3];
    std::optional<std::int64_t> at, deadline;
    bool ok = words(*drain, 3, w) && (w[0] == "0" || w[0] == "1");
    if (ok) {
      at = decimal(w[1]);
      deadline = decimal(w[2]);
      ok = at && *at > 0 && deadline;
    }
    if (ok) {
      st.has_drain = true;
      st.drain = w[0] == "1";
      st.drain_ms = *at;
      // An enabled backend has no deadline, whatever the field says.
      st.deadline_ms = st.drain ? *deadline : 0;
    } else {
      st.bad_drain = true;
      errors->push_back("drain: not \"<0|1> <ms> <deadline ms>\": " + shown(*drain));
    }
  }
  if (weight) {
    std::string_view w[2];
    std::optional<std::int64_t> value, at;
    bool ok = words(*weight, 2, w);
    if (ok) {
      value = decimal(w[0]);
      at = decimal(w[1]);
      ok = value && *value <= conf::kMaxWeight && at && *at > 0;
    }
    if (ok) {
      st.has_weight = true;
      st.weight = static_cast<std::uint32_t>(*value);
      st.weight_ms = *at;
    } else {
      st.bad_weight = true;
      errors->push_back("weight: not \"<0.." + std::to_string(conf::kMaxWeight) + "> <ms>\": " + shown(*weight));
    }
  }
  return st;
}

std::string drainField(const AdminState& s) {
  return std::string(s.drain ? "1 " : "0 ") + std::to_string(s.drain_ms) + " " +
         std::to_string(s.drain ? s.deadline_ms : 0);
}

std::string weightField(const AdminState& s) { return std::to_string(s.weight) + " " + std::to_string(s.weight_ms); }

namespace {

// One aspect of the merge: what to write, and whether Redis's value is
// taken (which `take` then copies).
struct Aspect {
  bool has;
  std::int64_t ms;
};

AdminWrite mergeAspect(Aspect ours, bool pending, Aspect theirs, bool theirs_bad, bool* take) {
  *take = false;
  if (ours.has && pending && (!theirs.has || ours.ms > theirs.ms)) return AdminWrite::kSet;
  if (theirs.has) {
    *take = true;
    return AdminWrite::kNone;
  }
  if (!ours.has) return AdminWrite::kNone;
  return theirs_bad ? AdminWrite::kSet : AdminWrite::kRestore;
}

}  // namespace

AdminMerge mergeAdminState(const KnownAdminState& ours, const AdminState& theirs) {
  AdminMerge m;
  m.next = ours;
  AdminState& next = m.next.state;
  const AdminState& o = ours.state;
  next.version = theirs.version;
  bool take_drain = false, take_weight = false;
  m.drain = mergeAspect({o.has_drain, o.drain_ms}, ours.drain_pending, {theirs.has_drain, theirs.drain_ms},
                        theirs.bad_drain, &take_drain);
  m.weight = mergeAspect({o.has_weight, o.weight_ms}, ours.weight_pending, {theirs.has_weight, theirs.weight_ms},
                         theirs.bad_weight, &take_weight);
  if (take_drain) {
    next.has_drain = true;
    next.drain = theirs.drain;
    next.drain_ms = theirs.drain_ms;
    next.deadline_ms = theirs.deadline_ms;
    m.next.drain_pending = false;
  }
  if (take_weight) {
    next.has_weight = true;
    next.weight = theirs.weight;
    next.weight_ms = theirs.weight_ms;
    m.next.weight_pending = false;
  }
  if ((take_drain || take_weight) && !theirs.by.empty()) next.by = theirs.by;
  return m;
}

}  // namespace tether::balancer
