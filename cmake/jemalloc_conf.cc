// Linked into the binaries that allocate with jemalloc (wl_use_jemalloc): jemalloc reads this
// symbol at start-up, before MALLOC_CONF (which still overrides it).
//
// thp: no transparent huge pages, for what jemalloc maps or for its metadata, even where the
// kernel's THP mode is "always". The first touch of a huge page stalls the thread that touches it
// for the whole 2 MiB at once. On the VMs this is measured on, whose free memory goes back to the
// host, that was 4.5 ms per page (against 1.6 us per 4 KiB page); a write group's leader that
// touches a new memtable block pays it inside a commit. With huge pages the top-up runs had 8-33
// commits over 10 ms each, around memtable switches, and 0-4 without; the paced p99 at 140,000/s
// fell from 15-32 ms to 8.5-12 ms, and uniform charges ran 15-20% faster (loadtest/README.md,
// sixteenth session). The eighth session had asked for them to spare TLB misses in the hash maps; measured
// again, the faults cost more than the misses they spared.
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's.
const char* malloc_conf = "thp:never,metadata_thp:disabled";
}
