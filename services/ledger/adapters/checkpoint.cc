#include "services/ledger/adapters/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "services/ledger/domain/snapshot.h"
#include "wattledger/eventlog/sha256.h"

namespace wattledger::ledger::adapters {

namespace {

constexpr std::string_view kMagic = "wattledger-ledger-checkpoint\n";
constexpr uint8_t kFileFormat = 1;

Status Errno(const std::string& what, const std::string& path) {
  return Internal(what + " " + path + ": " + std::strerror(errno));
}

// Closes the descriptor when it goes.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

Status SyncDir(const std::string& dir) {
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.fd < 0) return Errno("cannot open directory", dir);
  if (::fsync(d.fd) != 0) return Errno("cannot sync directory", dir);
  return Status::Ok();
}

// The hash the log's chain gives the event at `seq` of `partition` ("" for 0: before any).
Result<std::string> HashAt(const eventlog::EventLog& log, uint32_t partition, uint64_t seq) {
  if (seq == 0) return std::string();
  WL_ASSIGN_OR_RETURN(auto events, log.Read(partition, seq, 1));
  if (events.empty() || events[0].seq() != seq) {
    return DataLoss("the log has no event " + std::to_string(seq) + " in partition " + std::to_string(partition));
  }
  return events[0].hash();
}

std::string Hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    out += kHex[static_cast<unsigned char>(c) >> 4];
    out += kHex[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

// That no txn id of the log's partition ("<log>/<partition>/<seq>"), and no seq an account keeps,
// is past `seq`.
Status NothingAfter(const Ledger& ledger, std::string_view log_name, uint32_t partition, uint64_t seq) {
  std::string own;
  eventlog::SetEventId(&own, log_name, partition, 1);
  own.resize(own.rfind('/'));  // "ledger/<p>"
  auto after = [&](std::string_view id) {
    std::string_view prefix;
    uint64_t number = 0;
    return SplitTxnId(id, &prefix, &number) && prefix == own && number > seq;
  };
  std::string found;
  for (const auto& [id, t] : ledger.state().txns) {
    if (found.empty() && after(id)) found = id;
  }
  ledger.state().entry_txns.ForEach([&](std::string_view id, const EntryTxn&) {
    if (found.empty() && after(id)) found = id;
  });
  if (!found.empty()) return DataLoss("it holds txn " + found + ", past its event " + std::to_string(seq));
  for (const auto& [id, a] : ledger.state().accounts) {
    if (a.last_entry_seq > seq || a.owner_since_seq > seq) {
      return DataLoss("account " + id + " names an event past the checkpoint's " + std::to_string(seq));
    }
  }
  return Status::Ok();
}

}  // namespace

std::string CheckpointPath(const std::string& dir, uint32_t partition) {
  return dir + "/partition-" + std::to_string(partition) + ".ckpt";
}

Result<uint64_t> WriteCheckpoint(const std::string& dir, const eventlog::EventLog& log, uint32_t partition,
                                 uint64_t seq, const Ledger& ledger, std::string_view build) {
  if (build.empty()) return FailedPrecondition("this executable has no GNU build ID: it writes no checkpoints");
  if (seq > log.Head(partition)) {
    return InvalidArgument("a checkpoint at seq " + std::to_string(seq) + " of partition " + std::to_string(partition) +
                           ", past the log's end " + std::to_string(log.Head(partition)));
  }
  WL_ASSIGN_OR_RETURN(const std::string hash, HashAt(log, partition, seq));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Internal("cannot make checkpoint directory " + dir + ": " + ec.message());
  const std::string path = CheckpointPath(dir, partition);
  const std::string tmp = path + ".tmp";
  Fd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (f.fd < 0) return Errno("cannot create", tmp);
  // Whatever fails from here leaves no temporary file (on a full disk, it would keep it full).
  struct RemoveUnlessRenamed {
    const std::string& tmp;
    bool renamed = false;
    ~RemoveUnlessRenamed() {
      if (!renamed) ::unlink(tmp.c_str());
    }
  } remove{tmp};
  eventlog::Sha256 sha;
  Status failed;
  auto put = [&](std::string_view bytes) {
    if (!failed.ok()) return;
    while (!bytes.empty()) {
      const ssize_t n = ::write(f.fd, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        failed = Errno("cannot write", tmp);
        return;
      }
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  };
  SnapshotWriter out([&](std::string_view chunk) {
    sha.Update(chunk);
    put(chunk);
  });
  out.Str(kMagic);
  out.Byte(kFileFormat);
  out.Str(build);
  out.U64(partition);
  out.U64(log.partitions());
  out.U64(seq);
  out.Str(hash);
  ledger.Save(out);
  out.Finish();
  const uint64_t bytes = out.written() + eventlog::Sha256::kBytes;
  put(sha.Final());
  WL_RETURN_IF_ERROR(failed);
  if (::fsync(f.fd) != 0) return Errno("cannot sync", tmp);
  if (::close(std::exchange(f.fd, -1)) != 0) return Errno("cannot close", tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Errno("cannot rename " + tmp + " to", path);
  remove.renamed = true;
  WL_RETURN_IF_ERROR(SyncDir(dir));
  return bytes;
}

Result<LoadedCheckpoint> ReadCheckpoint(const std::string& dir, const eventlog::EventLog& log, uint32_t partition,
                                        const LedgerConfig& config, std::string_view build) {
  const std::string path = CheckpointPath(dir, partition);
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (f.fd < 0 && errno == ENOENT) return NotFound("no checkpoint " + path);
  if (f.fd < 0) return Errno("cannot open", path);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return Errno("cannot stat", path);
  const auto size = static_cast<uint64_t>(st.st_size);
  auto damaged = [&](const std::string& why) { return DataLoss("checkpoint " + path + " is damaged: " + why); };
  if (size < kMagic.size() + eventlog::Sha256::kBytes) return damaged("it is only " + std::to_string(size) + " bytes");
  const uint64_t body = size - eventlog::Sha256::kBytes;
  Status read_error;
  // Up to `want` bytes at the file's offset `at`; fewer only at its end or on an error.
  auto read_at = [&](char* dst, size_t want, uint64_t at) -> size_t {
    size_t got = 0;
    while (got < want) {
      const ssize_t n = ::pread(f.fd, dst + got, want - got, static_cast<off_t>(at + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && read_error.ok()) read_error = Errno("cannot read", path);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    return got;
  };
  // The checksum first, so that no field is believed (a build ID, a seq) before it is known to
  // be the one written: a damaged file is reported as damaged, not as another build's.
  {
    eventlog::Sha256 sha;
    std::string chunk(1 << 20, '\0');
    for (uint64_t at = 0; at < body;) {
      const size_t got = read_at(chunk.data(), static_cast<size_t>(std::min<uint64_t>(chunk.size(), body - at)), at);
      WL_RETURN_IF_ERROR(read_error);
      if (got == 0) return damaged("it ended while being read");
      sha.Update(std::string_view(chunk.data(), got));
      at += got;
    }
    std::string trailer(eventlog::Sha256::kBytes, '\0');
    const size_t got = read_at(trailer.data(), trailer.size(), body);
    WL_RETURN_IF_ERROR(read_error);
    if (got != trailer.size() || sha.Final() != trailer) return damaged("its SHA-256 does not match its contents");
  }
  uint64_t offered = 0;
  SnapshotReader in([&](char* dst, size_t max) -> size_t {
    const size_t got = read_at(dst, static_cast<size_t>(std::min<uint64_t>(max, body - offered)), offered);
    offered += got;
    return got;
  });
  auto bad = [&]() -> Status {
    if (!read_error.ok()) return read_error;
    return damaged(in.error().message());
  };
  std::string magic;
  if (!in.Str(&magic, 64)) return bad();
  if (magic != kMagic) return damaged("it does not start as a ledger checkpoint does");
  uint8_t format = 0;
  std::string written_by;
  uint64_t p = 0;
  uint64_t partitions = 0;
  LoadedCheckpoint loaded;
  std::string hash;
  if (!(in.Byte(&format))) return bad();
  if (format != kFileFormat) {
    return FailedPrecondition("checkpoint " + path + " is of file format " + std::to_string(format) + ", not " +
                              std::to_string(kFileFormat));
  }
  if (!(in.Str(&written_by, 256) && in.U64(&p) && in.U64(&partitions) && in.U64(&loaded.seq) && in.Str(&hash, 64))) {
    return bad();
  }
  if (build.empty()) return FailedPrecondition("this executable has no GNU build ID: it reads no checkpoints");
  if (written_by != build) {
    return FailedPrecondition("checkpoint " + path + " was written by build " + (written_by.empty() ? "(none)" : written_by) +
                              ", and this is build " + (build.empty() ? "(none)" : std::string(build)) +
                              ": only the build that wrote a checkpoint may read it");
  }
  if (p != partition || partitions != log.partitions()) {
    return FailedPrecondition("checkpoint " + path + " is of partition " + std::to_string(p) + " of " +
                              std::to_string(partitions) + ", not of partition " + std::to_string(partition) + " of " +
                              std::to_string(log.partitions()));
  }
  if (loaded.seq > log.Head(partition)) {
    return FailedPrecondition("checkpoint " + path + " is at event " + std::to_string(loaded.seq) +
                              ", past the end of the log's partition (" + std::to_string(log.Head(partition)) + ")");
  }
  WL_ASSIGN_OR_RETURN(const std::string in_log, HashAt(log, partition, loaded.seq));
  if (in_log != hash) {
    return FailedPrecondition("checkpoint " + path + " is of another log: the hash it has for event " +
                              std::to_string(loaded.seq) + " is " + Hex(hash) + ", the log's is " + Hex(in_log));
  }
  auto ledger = Ledger::Load(in, config);
  if (!read_error.ok()) return read_error;
  if (!ledger.ok()) return damaged(ledger.status().message());
  // Nothing in it may be of an event after its seq: the next txn id would be one it holds.
  if (Status s = NothingAfter(**ledger, log.name(), partition, loaded.seq); !s.ok()) return damaged(s.message());
  loaded.ledger = std::move(ledger).value();
  loaded.bytes = size;
  return loaded;
}

}  // namespace wattledger::ledger::adapters
