# Writes INPUT's bytes into OUTPUT as `extern const std::string_view <NAME>` in namespace
# NAMESPACE. Binary-safe (the bytes are spelled as hex, the view carries the length); an INPUT
# that does not exist gives an empty view.
if(EXISTS "${INPUT}")
  file(READ "${INPUT}" content HEX)
else()
  set(content "")
endif()
string(LENGTH "${content}" hex_length)
math(EXPR byte_count "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
file(WRITE "${OUTPUT}"
  "#include <string_view>\n"
  "namespace ${NAMESPACE} {\n"
  "static const unsigned char kBytes[] = {${bytes} 0};\n"
  "extern const std::string_view ${NAME}(reinterpret_cast<const char*>(kBytes), ${byte_count});\n"
  "}\n")
