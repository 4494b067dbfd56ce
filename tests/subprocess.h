// Subprocess: a child process for integration tests, with its stdout (and optionally its stdin)
// on pipes and its stderr in a file. Tests only.
//
// What it guarantees: a child never outlives its Subprocess (the destructor kills and reaps it)
// nor the test process (PR_SET_PDEATHSIG), and every wait is bounded by a deadline. Reading is
// line by line; a line is returned only once it is complete, so a child killed in the middle of
// a write leaves at most one partial line, which is never returned.
//
// Thread safety: none; one test thread owns a Subprocess.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace wattledger::testing {

using Clock = std::chrono::steady_clock;

class Subprocess {
 public:
  struct Options {
    std::vector<std::string> argv;
    bool pipe_stdin = false;
    std::string stderr_path;  // Empty: inherit the test's stderr.
  };

  enum class Read { kLine, kEof, kTimeout };

  Subprocess() = default;
  ~Subprocess() { KillAndReap(); }
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // Starts the child; returns an error message, empty on success.
  std::string Start(const Options& options) {
    KillAndReap();
    // A child that went away must not kill the test through SIGPIPE on its stdin.
    ::signal(SIGPIPE, SIG_IGN);
    options_ = options;
    buffer_.clear();
    eof_ = false;
    status_.reset();
    int out[2], in[2] = {-1, -1};
    if (::pipe2(out, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
    if (options.pipe_stdin && ::pipe2(in, O_CLOEXEC) != 0) {
      ::close(out[0]);
      ::close(out[1]);
      return std::string("pipe: ") + std::strerror(errno);
    }
    // Everything the child needs is prepared before fork: after it only async-signal-safe calls.
    std::vector<char*> argv;
    for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const char* err_path = options.stderr_path.empty() ? nullptr : options.stderr_path.c_str();
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return std::string("fork: ") + std::strerror(errno);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);  // The test died between fork and prctl.
      ::signal(SIGPIPE, SIG_DFL);
      ::dup2(out[1], STDOUT_FILENO);
      if (in[0] >= 0) ::dup2(in[0], STDIN_FILENO);
      if (err_path != nullptr) {
        int fd = ::open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) ::dup2(fd, STDERR_FILENO);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    ::close(out[1]);
    out_fd_ = out[0];
    ::fcntl(out_fd_, F_SETFL, ::fcntl(out_fd_, F_GETFL) | O_NONBLOCK);
    if (in[0] >= 0) {
      ::close(in[0]);
      in_fd_ = in[1];
    }
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    return {};
  }

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !status_; }
  int stdout_fd() const { return out_fd_; }

  // Returns the next complete stdout line if one is buffered or readable by `deadline`.
  Read ReadLine(std::string* line, Clock::time_point deadline) {
    while (true) {
      if (TakeLine(line)) return Read::kLine;
      if (eof_) return Read::kEof;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left < 0) return Read::kTimeout;
      pollfd pfd{out_fd_, POLLIN, 0};
      int n = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left, 1000)) + 1);
      if (n < 0 && errno != EINTR) return Read::kEof;
      if (n > 0) Fill();
    }
  }

  // Non-blocking: a complete line if one is available now.
  bool TryReadLine(std::string* line) {
    if (TakeLine(line)) return true;
    if (!eof_) Fill();
    return TakeLine(line);
  }
  bool eof() const { return eof_ && buffer_.find('\n') == std::string::npos; }

  bool WriteLine(const std::string& line) {
    if (in_fd_ < 0) return false;
    std::string data = line + "\n";
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(in_fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  void CloseStdin() {
    if (in_fd_ >= 0) ::close(in_fd_);
    in_fd_ = -1;
  }

  void Signal(int sig) {
    if (running()) ::kill(pid_, sig);
  }

  // Waits until the child exits or `deadline` passes; returns its wait status.
  std::optional<int> Wait(Clock::time_point deadline) {
    if (pid_ <= 0) return status_;
    while (!status_) {
      int st = 0;
      pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        status_ = st;
        break;
      }
      if (r < 0 && errno != EINTR) break;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left < 0) break;
      if (pidfd_ >= 0) {
        pollfd pfd{pidfd_, POLLIN, 0};
        ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left, 1000)) + 1);
      } else {
        ::usleep(2000);  // No pidfd (old kernel): poll the exit status, still bounded.
      }
    }
    return status_;
  }

  // SIGKILL, reap, and collect what the child wrote before it died. Returns the wait status.
  std::optional<int> Kill(Clock::time_point deadline) {
    Signal(SIGKILL);
    return Wait(deadline);
  }

  // Reads whatever is left on stdout after the child exited (bounded by `deadline`).
  std::vector<std::string> DrainLines(Clock::time_point deadline) {
    std::vector<std::string> lines;
    std::string line;
    while (ReadLine(&line, deadline) == Read::kLine) lines.push_back(line);
    return lines;
  }

  // The last `max_bytes` of the child's stderr file, for failure messages.
  std::string StderrTail(size_t max_bytes = 4000) const {
    if (options_.stderr_path.empty()) return "(stderr not captured)";
    std::ifstream f(options_.stderr_path);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    return s.size() > max_bytes ? "..." + s.substr(s.size() - max_bytes) : s;
  }

  static std::string DescribeStatus(std::optional<int> st) {
    if (!st) return "still running";
    if (WIFEXITED(*st)) return "exit " + std::to_string(WEXITSTATUS(*st));
    if (WIFSIGNALED(*st)) return std::string("signal ") + ::strsignal(WTERMSIG(*st));
    return "status " + std::to_string(*st);
  }

 private:
  bool TakeLine(std::string* line) {
    auto nl = buffer_.find('\n');
    if (nl == std::string::npos) return false;
    line->assign(buffer_, 0, nl);
    buffer_.erase(0, nl + 1);
    return true;
  }

  void Fill() {
    char chunk[65536];
    while (true) {
      ssize_t n = ::read(out_fd_, chunk, sizeof chunk);
      if (n > 0) {
        buffer_.append(chunk, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) eof_ = true;
      if (n < 0 && errno == EINTR) continue;
      return;  // EAGAIN: nothing more for now.
    }
  }

  void KillAndReap() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
      status_ = st;
    }
    for (int* fd : {&out_fd_, &in_fd_, &pidfd_}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
    pid_ = -1;
  }

  Options options_;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int in_fd_ = -1;
  int pidfd_ = -1;
  std::string buffer_;
  bool eof_ = false;
  std::optional<int> status_;
};

// Seconds from now, as a deadline.
inline Clock::time_point In(std::chrono::milliseconds d) { return Clock::now() + d; }

// Blocks until one of `fds` is readable or `deadline` passes.
inline void WaitReadable(const std::vector<int>& fds, Clock::time_point deadline) {
  std::vector<pollfd> pfds;
  for (int fd : fds) {
    if (fd >= 0) pfds.push_back({fd, POLLIN, 0});
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return;
  ::poll(pfds.data(), pfds.size(), static_cast<int>(std::min<long long>(left, 1000)));
}

}  // namespace wattledger::testing
