# Writes INPUT's text into OUTPUT as `extern const std::string_view kRuntimeGlueJs`.
file(READ ${INPUT} content HEX)
string(LENGTH "${content}" hex_length)
math(EXPR byte_count "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
file(WRITE ${OUTPUT}
  "#include <string_view>\n"
  "namespace flux::runtime {\n"
  "static const char kBytes[] = {${bytes} 0};\n"
  "extern const std::string_view kRuntimeGlueJs(kBytes, ${byte_count});\n"
  "}\n")
