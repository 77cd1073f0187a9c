# Turns each scripts/<name>.lua into a C string constant fleet__script_src_<name>, with
# scripts/lib.lua (the helpers every transition shares) in front of it.
string(REPLACE "," ";" NAMES "${NAMES}")
set(body "/* Generated from the .lua files in shared/scripts by embed.cmake. Do not edit. */\n")
file(READ ${DIR}/lib.lua libhex HEX)
foreach(name ${NAMES})
  file(READ ${DIR}/${name}.lua hex HEX)
  set(hex "${libhex}${hex}")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "const char fleet__script_src_${name}[] = {${bytes}0x00};\n")
endforeach()
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
