# Builds and runs the consumer in app/ against sockit, one way per MODE:
#   pkgconfig          cc main.c $(pkg-config --cflags --libs sockit)
#   pkgconfig_static   the same with --static, libsockit.a linked in
#   find_package       app/ with find_package(sockit), both targets
#   subdirectory       app/ with add_subdirectory(<source tree>)
#   fetchcontent       app/ with FetchContent from the source tree
# cmake -DMODE=... -DPREFIX=<install prefix> -DLIBDIR=<lib dir under it>
#       -DSRC=<sockit source> -DWORK=<scratch dir> -DCC=<compiler>
#       -DREADELF=readelf -DSONAME=libsockit.so.0.1 [-DURING=ON] [-DCARES=ON]
#       [-DGENERATOR=...] -P run.cmake
# The installed prefix comes from the fixture test install.prefix.
# MODE=install (-DPREFIX, -DBUILD=<sockit build dir>) makes that prefix.
cmake_minimum_required(VERSION 3.20)
if(MODE STREQUAL "install")
  file(REMOVE_RECURSE ${PREFIX})
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD} --prefix ${PREFIX}
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cmake --install ${BUILD} --prefix ${PREFIX}: ${rc}")
  endif()
  return()
endif()
set(app ${CMAKE_CURRENT_LIST_DIR}/app)
set(out ${WORK}/${MODE})
file(REMOVE_RECURSE ${out})
file(MAKE_DIRECTORY ${out})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE o
                  ERROR_VARIABLE e)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "${cmd}\nexit ${rc}\n${o}\n${e}")
  endif()
  set(run_out "${o}" PARENT_SCOPE)
endfunction()

# Runs a built consumer and checks its NEEDED entries: libsockit's soname
# for a dynamic link, none for a static one.
function(check_consumer exe linkage)
  run(${READELF} -d ${exe})
  if(linkage STREQUAL "shared" AND NOT run_out MATCHES "\\[${SONAME}\\]")
    message(FATAL_ERROR "${exe} does not need ${SONAME}:\n${run_out}")
  endif()
  if(linkage STREQUAL "static" AND run_out MATCHES "libsockit")
    message(FATAL_ERROR "${exe} needs libsockit although linked statically")
  endif()
  run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${PREFIX}/${LIBDIR} ${exe})
  if(NOT run_out MATCHES "consumer: ok")
    message(FATAL_ERROR "${exe}: ${run_out}")
  endif()
  message(STATUS "${exe}: ${run_out}")
endfunction()

if(MODE MATCHES "^pkgconfig")
  set(ENV{PKG_CONFIG_PATH} ${PREFIX}/${LIBDIR}/pkgconfig)
  set(static "")
  if(MODE STREQUAL "pkgconfig_static")
    set(static --static)
  endif()
  run(pkg-config ${static} --cflags --libs sockit)
  string(STRIP "${run_out}" flags)
  separate_arguments(flags UNIX_COMMAND "${flags}")
  message(STATUS "pkg-config ${static} --cflags --libs sockit: ${flags}")
  if(static)
    # What the static library needs must come with it.
    set(want -lsockit -lpthread -lssl -lcrypto)
    if(URING)
      list(APPEND want -luring)
    endif()
    if(CARES)
      list(APPEND want -lcares)
    endif()
    foreach(f IN LISTS want)
      if(NOT f IN_LIST flags)
        message(FATAL_ERROR "pkg-config --static --libs sockit lacks ${f}")
      endif()
    endforeach()
    # Take libsockit.a although libsockit.so lies next to it.
    list(TRANSFORM flags REPLACE "^-lsockit$" "-l:libsockit.a")
    set(linkage static)
  else()
    set(linkage shared)
  endif()
  run(${CC} -std=c11 -Wall -Wextra -Werror -o ${out}/consumer ${app}/main.c ${flags})
  check_consumer(${out}/consumer ${linkage})
else()
  set(gen "")
  if(GENERATOR)
    set(gen -G ${GENERATOR})
  endif()
  run(${CMAKE_COMMAND} -S ${app} -B ${out} ${gen} -DCMAKE_C_COMPILER=${CC}
      -DCMAKE_BUILD_TYPE=Debug -DSOCKIT_CONSUMER_MODE=${MODE}
      -DCMAKE_PREFIX_PATH=${PREFIX} -DSOCKIT_SOURCE_DIR=${SRC}
      "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror")
  run(${CMAKE_COMMAND} --build ${out})
  check_consumer(${out}/consumer_shared shared)
  check_consumer(${out}/consumer_static static)
endif()
