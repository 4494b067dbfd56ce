// Names the calling thread, as `top -H`, `perf` and gdb show it: which thread is a partition's
// writer, its committer or a consumer, instead of the process's name on every one.
#pragma once

#include <string>
#include <string_view>

namespace wattledger {

// Linux keeps 15 bytes of a thread's name: a longer one is cut to its first 15.
void NameThisThread(std::string_view name);
// The calling thread's name ("" where the platform does not say).
std::string ThisThreadName();

}  // namespace wattledger
