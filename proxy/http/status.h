// The one status table: reason phrases for the statuses tether itself
// answers with, and for any status a head must be written for.
#pragma once

#include <string_view>

namespace tether::http {

// The RFC 9110 reason phrase; "Unknown" for a code without one.
std::string_view reasonPhrase(int status);

}  // namespace tether::http
