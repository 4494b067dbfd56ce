// Linked into the binaries that allocate with jemalloc (wl_use_jemalloc): jemalloc reads this
// symbol at start-up, before MALLOC_CONF (which still overrides it).
//
// thp: jemalloc asks for transparent huge pages (madvise) for the memory it maps, and for its
// own metadata. The ledger's state is hash maps and statements of millions of entries, read at
// random: with 4 KiB pages nearly every lookup also misses the TLB, and in a VM a TLB miss walks
// two page tables. Debian's kernels default THP to "madvise", so nothing changes unless asked.
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's.
const char* malloc_conf = "thp:always,metadata_thp:always";
}
