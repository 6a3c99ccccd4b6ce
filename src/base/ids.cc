#include "base/ids.h"

#include <algorithm>

namespace flux {

RequestId RequestId::generate(Clock& clock, Random& random) {
  return generate(static_cast<int64_t>(clock.nowMillis() * 1000), random);
}

RequestId RequestId::generate(int64_t unix_us, Random& random) {
  unix_us = std::max<int64_t>(unix_us, 0);
  RequestId id = lowestOf(static_cast<uint64_t>(unix_us / 1000));
  // The microsecond of the millisecond in 1/4096 ms steps, in the 12 bits after the version.
  auto fraction = static_cast<uint32_t>(unix_us % 1000 * 4096 / 1000);
  id.bytes_[6] = static_cast<uint8_t>(0x70 | (fraction >> 8));  // version 7
  id.bytes_[7] = static_cast<uint8_t>(fraction & 0xff);
  uint64_t random_bits = random.next64();
  for (int i = 0; i < 8; ++i) id.bytes_[8 + i] = static_cast<uint8_t>(random_bits >> (8 * i));
  id.bytes_[8] = static_cast<uint8_t>(0x80 | (id.bytes_[8] & 0x3f));  // RFC 4122 variant
  return id;
}

RequestId RequestId::lowestOf(uint64_t unix_ms) {
  RequestId id;
  for (int i = 0; i < 6; ++i) id.bytes_[i] = static_cast<uint8_t>(unix_ms >> (40 - 8 * i));
  id.bytes_[6] = 0x70;
  id.bytes_[8] = 0x80;
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
