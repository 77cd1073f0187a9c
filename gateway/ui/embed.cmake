# Turns the dashboard's files (gateway/ui/<name>) into the C table gw_ui_assets (ui.h), so
# that the gateway serves them from its own binary: no file is read at run time and the
# page works wherever the gateway runs, offline.
#
#   cmake -DDIR=gateway/ui -DNAMES=index.html,app.css,app.js -DOUT=ui_assets.c -P embed.cmake
#
# index.html is served at "/", every other file at "/ui/<name>". Each file is embedded
# twice: as it is, and gzip-compressed (libarchive's gzip through file(ARCHIVE_CREATE),
# level 9), for clients that send Accept-Encoding: gzip. Its ETag is the first 20 hex
# digits of the SHA-256 of the file as it is: the same text gives the same tag in every
# build, so a browser's copy stays valid across gateway restarts and replicas.
string(REPLACE "," ";" NAMES "${NAMES}")

function(c_bytes path out)
  file(READ ${path} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(LENGTH "${hex}" n)
  math(EXPR n "${n} / 2")
  set(${out} "${bytes}" PARENT_SCOPE)
  set(${out}_LEN ${n} PARENT_SCOPE)
endfunction()

set(body "/* Generated from gateway/ui/ by gateway/ui/embed.cmake. Do not edit. */\n")
string(APPEND body "#include \"ui.h\"\n\n")
set(table "")
set(i 0)
foreach(name ${NAMES})
  set(src ${DIR}/${name})
  if(NOT EXISTS ${src})
    message(FATAL_ERROR "gateway/ui/${name} does not exist")
  endif()
  if(name MATCHES "\\.html$")
    set(type "text/html; charset=utf-8")
  elseif(name MATCHES "\\.js$")
    set(type "text/javascript; charset=utf-8")
  elseif(name MATCHES "\\.css$")
    set(type "text/css; charset=utf-8")
  elseif(name MATCHES "\\.svg$")
    set(type "image/svg+xml")
  else()
    message(FATAL_ERROR "gateway/ui/${name}: no content type for this extension in embed.cmake")
  endif()
  if(name STREQUAL "index.html")
    set(path "/")
  else()
    set(path "/ui/${name}")
  endif()
  file(SHA256 ${src} sha)
  string(SUBSTRING "${sha}" 0 20 tag)
  set(gz ${OUT}.${i}.gz)
  file(ARCHIVE_CREATE OUTPUT ${gz} PATHS ${src} FORMAT raw COMPRESSION GZip
       COMPRESSION_LEVEL 9)
  c_bytes(${src} plain)
  c_bytes(${gz} packed)
  file(REMOVE ${gz})
  string(APPEND body "static const unsigned char asset_${i}[] = {${plain}0x00};\n")
  string(APPEND body "static const unsigned char asset_${i}_gz[] = {${packed}0x00};\n")
  string(APPEND table "    {\"${path}\", \"${type}\", \"\\\"${tag}\\\"\", \"\\\"${tag}-gz\\\"\",\n"
                      "     asset_${i}, ${plain_LEN}, asset_${i}_gz, ${packed_LEN}},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND body "\nconst gw_ui_asset gw_ui_assets[] = {\n${table}};\n")
string(APPEND body "const size_t gw_ui_nassets = ${i};\n")
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
