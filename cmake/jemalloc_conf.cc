// Linked into the binaries that allocate with jemalloc (wl_use_jemalloc): jemalloc reads this
// symbol at start-up, before MALLOC_CONF (which still overrides it).
//
// thp: jemalloc asks for transparent huge pages (madvise) for the memory it maps, and for its
// own metadata. The ledger's state is hash maps and statements of millions of entries, read at
// random over hundreds of MiB: a TLB entry then covers 2 MiB of them instead of 4 KiB, and in a
// VM each TLB miss walks two page tables. Debian's kernels default THP to "madvise", so a process
// gets none unless it asks. Measured in loadtest/README.md (eighth session): a few percent less
// CPU per top-up, 13% more peak RSS.
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's.
const char* malloc_conf = "thp:always,metadata_thp:always";
}
