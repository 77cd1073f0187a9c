# Turns gateway/openapi.json into openapi_json.c: the bytes gw_openapi_json (NUL-terminated),
# their length and their ETag (openapi.h), so that the gateway serves the document from its
# own binary and reads no file at run time.
#
#   cmake -DIN=gateway/openapi.json -DOUT=openapi_json.c -P openapi.cmake
#
# A document that is not JSON, or has no "openapi" and "paths" members, stops the build;
# tests/openapi/openapi_test.mjs checks the rest (OpenAPI 3.1, routes, problem types). The
# ETag is the first 20 hex digits of the file's SHA-256: the same text gives the same tag
# in every build and every replica.
file(READ ${IN} text)
string(JSON version ERROR_VARIABLE err GET "${text}" openapi)
if(err)
  message(FATAL_ERROR "gateway/openapi.json: not JSON with an \"openapi\" member: ${err}")
endif()
string(JSON paths ERROR_VARIABLE err TYPE "${text}" paths)
if(err OR NOT paths STREQUAL "OBJECT")
  message(FATAL_ERROR "gateway/openapi.json: no \"paths\" object: ${err}")
endif()
file(SHA256 ${IN} sha)
string(SUBSTRING "${sha}" 0 20 tag)
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR n "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT}.tmp
     "/* Generated from gateway/openapi.json by gateway/openapi.cmake. Do not edit. */\n"
     "#include \"openapi.h\"\n\n"
     "const char gw_openapi_json[] = {${bytes}0x00};\n"
     "const size_t gw_openapi_json_len = ${n};\n"
     "const char gw_openapi_etag[] = \"\\\"${tag}\\\"\";\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
