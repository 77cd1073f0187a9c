# Turns each scripts/<name>.lua into a C string constant fleet_script_src_<name>, with
# scripts/lib.lua (the helpers every transition shares) in front of it.
#
# Every script is sent with a shebang (Redis 7 script flags), which must be its first
# line, so it goes before lib.lua: a script's own first line when it is one ("#!lua
# flags=no-writes" for the read-only ones, "#!lua flags=allow-oom" for the few that must
# work while Redis is full), else plain "#!lua". With a shebang Redis checks the flags
# before the script runs: a script that may write is refused whole with -OOM while Redis
# is at maxmemory under noeviction, so a refused transition has written nothing (without
# one, Redis refuses only the first write and lets a script that already wrote go on).
string(REPLACE "," ";" NAMES "${NAMES}")
set(body "/* Generated from the .lua files in shared/scripts by embed.cmake. Do not edit. */\n")
file(READ ${DIR}/lib.lua lib)
foreach(name ${NAMES})
  file(READ ${DIR}/${name}.lua text)
  set(shebang "#!lua\n")
  if(text MATCHES "^#!lua[^\n]*\n")
    set(shebang "${CMAKE_MATCH_0}")
    string(LENGTH "${shebang}" n)
    string(SUBSTRING "${text}" ${n} -1 text)
  endif()
  file(WRITE ${OUT}.${name}.lua "${shebang}${lib}${text}")
  file(READ ${OUT}.${name}.lua hex HEX)
  file(REMOVE ${OUT}.${name}.lua)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "const char fleet_script_src_${name}[] = {${bytes}0x00};\n")
endforeach()
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
