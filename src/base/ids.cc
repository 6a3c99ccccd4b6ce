#include "base/ids.h"

namespace flux {

RequestId RequestId::generate(Clock& clock, Random& random) {
  RequestId id;
  auto ms = static_cast<uint64_t>(clock.nowMillis());
  for (int i = 0; i < 6; ++i) id.bytes_[i] = static_cast<uint8_t>(ms >> (40 - 8 * i));
  uint64_t r1 = random.next64();
  uint64_t r2 = random.next64();
  for (int i = 0; i < 2; ++i) id.bytes_[6 + i] = static_cast<uint8_t>(r1 >> (8 * i));
  for (int i = 0; i < 8; ++i) id.bytes_[8 + i] = static_cast<uint8_t>(r2 >> (8 * i));
  id.bytes_[6] = static_cast<uint8_t>(0x70 | (id.bytes_[6] & 0x0f));  // version 7
  id.bytes_[8] = static_cast<uint8_t>(0x80 | (id.bytes_[8] & 0x3f));  // RFC 4122 variant
  return id;
}

std::string RequestId::toString() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(36, '-');
  size_t at = 0;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) ++at;  // the dashes are in place already
    out[at++] = kHex[bytes_[i] >> 4];
    out[at++] = kHex[bytes_[i] & 0xf];
  }
  return out;
}

std::string RequestId::shortForm() const { return toString().substr(28); }

uint64_t RequestId::unixMillis() const {
  uint64_t ms = 0;
  for (int i = 0; i < 6; ++i) ms = (ms << 8) | bytes_[i];
  return ms;
}

}  // namespace flux
