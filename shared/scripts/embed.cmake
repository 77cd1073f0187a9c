# Turns each scripts/<name>.lua into a C string constant fleet_script_src_<name>, with the
# helpers of scripts/lib.lua that it uses in front of it.
#
# Every script is sent with a shebang (Redis 7 script flags), which must be its first
# line, so it goes before the helpers: a script's own first line when it is one ("#!lua
# flags=no-writes" for the read-only ones, "#!lua flags=allow-oom" for the few that must
# work while Redis is full), else plain "#!lua". With a shebang Redis checks the flags
# before the script runs: a script that may write is refused whole with -OOM while Redis
# is at maxmemory under noeviction, so a refused transition has written nothing (without
# one, Redis refuses only the first write and lets a script that already wrote go on).
#
# Redis runs the whole text at every call, so defining a helper costs time even when the
# script never calls it (the 20 of lib.lua's 21 blocks that get.lua does not use: about
# 1.1 us per call; docs/benchmarks.md, "The tenant index as a stream, and only the helpers
# a script uses"). lib.lua
# is cut into blocks, each starting at a line "--- name [name...]" (the names its
# definition makes) and running to the next; a script gets the blocks whose names its
# code mentions, then those the chosen blocks' code mentions, until none is added, in
# lib.lua's order. "Code" is the text without comments and the contents of its strings
# (code_of): a name left in it that is not a call costs a needless block, never a missing
# one.
# tests/unit/script_embed_test.c checks the result with a Lua tokenizer of its own.
string(REPLACE "," ";" NAMES "${NAMES}")
set(body "/* Generated from the .lua files in shared/scripts by embed.cmake. Do not edit. */\n")

# The code of a Lua text: without its string literals' contents and its comments, between
# newlines (so that a name at either end is still between two non-name characters). A
# text with an escaped quote or a long bracket ("[[", "[=[") would fool the string regex:
# from such a text only the whole-line comments go, which can hide no code.
function(code_of text out)
  set(code "\n${text}\n")
  if(code MATCHES "\\\\['\"]|\\[=*\\[")
    string(REGEX REPLACE "\n[ \t]*--[^\n]*" "\n" code "${code}")
  else()
    string(REGEX REPLACE "'[^'\n]*'|\"[^\"\n]*\"" "''" code "${code}")
    string(REGEX REPLACE "--[^\n]*" "" code "${code}")
  endif()
  set(${out} "${code}" PARENT_SCOPE)
endfunction()

file(READ ${DIR}/lib.lua rest)
string(FIND "${rest}" "\n--- " at)
if(at LESS 0)
  message(FATAL_ERROR "lib.lua: no block (a line \"--- name\")")
endif()
math(EXPR at "${at} + 1")
string(SUBSTRING "${rest}" 0 ${at} prelude)
code_of("${prelude}" prelude)
if(NOT prelude MATCHES "^[ \t\n]*$")
  message(FATAL_ERROR "lib.lua: code before the first block (a line \"--- name\")")
endif()
string(SUBSTRING "${rest}" ${at} -1 rest)
set(nblocks 0)
while(NOT rest STREQUAL "")
  string(FIND "${rest}" "\n--- " next)
  if(next LESS 0)
    set(block "${rest}")
    set(rest "")
  else()
    math(EXPR next "${next} + 1")
    string(SUBSTRING "${rest}" 0 ${next} block)
    string(SUBSTRING "${rest}" ${next} -1 rest)
  endif()
  if(NOT block MATCHES "^--- ([A-Za-z_][A-Za-z0-9_ ]*)\n")
    message(FATAL_ERROR "lib.lua: a block line is not \"--- name [name...]\": ${block}")
  endif()
  string(STRIP "${CMAKE_MATCH_1}" names)
  string(REPLACE " " ";" names "${names}")
  set(BLOCK_${nblocks} "${block}")
  set(BLOCK_NAMES_${nblocks} ${names})
  code_of("${block}" BLOCK_CODE_${nblocks})
  math(EXPR nblocks "${nblocks} + 1")
endwhile()
math(EXPR last "${nblocks} - 1")

foreach(name ${NAMES})
  file(READ ${DIR}/${name}.lua text)
  set(shebang "#!lua\n")
  if(text MATCHES "^#!lua[^\n]*\n")
    set(shebang "${CMAKE_MATCH_0}")
    string(LENGTH "${shebang}" n)
    string(SUBSTRING "${text}" ${n} -1 text)
  endif()
  # The blocks the script needs: its code's mentions, then the chosen blocks', to the end.
  code_of("${text}" scan)
  foreach(i RANGE ${last})
    set(chosen_${i} FALSE)
  endforeach()
  set(added TRUE)
  while(added)
    set(added FALSE)
    foreach(i RANGE ${last})
      if(NOT chosen_${i})
        foreach(n IN LISTS BLOCK_NAMES_${i})
          if(scan MATCHES "[^A-Za-z0-9_.:]${n}[^A-Za-z0-9_]")
            set(chosen_${i} TRUE)
            string(APPEND scan "${BLOCK_CODE_${i}}")
            set(added TRUE)
            break()
          endif()
        endforeach()
      endif()
    endforeach()
  endwhile()
  set(lib "")
  foreach(i RANGE ${last})
    if(chosen_${i})
      string(APPEND lib "${BLOCK_${i}}")
    endif()
  endforeach()
  file(WRITE ${OUT}.${name}.lua "${shebang}${lib}${text}")
  file(READ ${OUT}.${name}.lua hex HEX)
  file(REMOVE ${OUT}.${name}.lua)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "const char fleet_script_src_${name}[] = {${bytes}0x00};\n")
endforeach()
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
