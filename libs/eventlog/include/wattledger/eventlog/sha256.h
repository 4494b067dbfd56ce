// SHA-256 through OpenSSL, fed a piece at a time: the event log's hash chain, and whoever else
// needs a digest of what it writes (ledger checkpoints).
#pragma once

#include <openssl/evp.h>

#include <string>
#include <string_view>

#include "wattledger/base/check.h"

namespace wattledger::eventlog {

class Sha256 {
 public:
  static constexpr size_t kBytes = 32;

  Sha256() : ctx_(EVP_MD_CTX_new()) {
    WL_CHECK(ctx_ != nullptr);
    Reset();
  }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Reset() { WL_CHECK(EVP_DigestInit_ex2(ctx_, Md(), nullptr) == 1); }
  void Update(std::string_view data) { WL_CHECK(EVP_DigestUpdate(ctx_, data.data(), data.size()) == 1); }
  std::string Final() {
    std::string out;
    Final(&out);
    return out;
  }
  // Into *out, replacing its contents: no allocation when it has the room.
  void Final(std::string* out) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    WL_CHECK(EVP_DigestFinal_ex(ctx_, md, &len) == 1);
    out->assign(reinterpret_cast<char*>(md), len);
  }

 private:
  // Fetched once: EVP_DigestInit_ex(EVP_sha256()) looks the implementation up again on every call.
  static const EVP_MD* Md() {
    static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
    WL_CHECK(md != nullptr);
    return md;
  }

  EVP_MD_CTX* ctx_;
};

}  // namespace wattledger::eventlog
