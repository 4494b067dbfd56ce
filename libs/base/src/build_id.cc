#include "wattledger/base/build_id.h"

#include <elf.h>
#include <link.h>

#include <cstdint>
#include <cstring>

namespace wattledger {

namespace {

// The NT_GNU_BUILD_ID note of the main program (the first object dl_iterate_phdr reports).
int FindBuildId(struct dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::string*>(data);
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const auto* p = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
    const char* end = p + ph.p_memsz;
    const size_t align = ph.p_align == 8 ? 8 : 4;  // Notes are padded to the segment's alignment.
    auto padded = [align](uint32_t n) { return (n + align - 1) & ~(align - 1); };
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) note;
      std::memcpy(&note, p, sizeof(note));
      const char* name = p + sizeof(note);
      const char* desc = name + padded(note.n_namesz);
      const char* next = desc + padded(note.n_descsz);
      if (next > end) break;
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
        static constexpr char kHex[] = "0123456789abcdef";
        for (uint32_t b = 0; b < note.n_descsz; ++b) {
          const auto byte = static_cast<unsigned char>(desc[b]);
          *out += kHex[byte >> 4];
          *out += kHex[byte & 15];
        }
        return 1;
      }
      p = next;
    }
  }
  return 1;  // Only the main program.
}

}  // namespace

const std::string& BuildId() {
  static const std::string id = [] {
    std::string out;
    dl_iterate_phdr(FindBuildId, &out);
    return out;
  }();
  return id;
}

}  // namespace wattledger
