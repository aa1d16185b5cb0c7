# Debian packages with CPack: `cpack -G DEB` in a configured build directory
# (best configured with -DCMAKE_INSTALL_PREFIX=/usr, which gives the
# multiarch library directory). One package per install component:
#   libsockit<soversion>  runtime: libsockit.so.<soversion>
#   libsockit-dev         headers, libsockit.a, libsockit.so, sockit.pc,
#                         the CMake package, the section-3 man pages
#   sockit-tools          sockit-server and sockit-client, their man pages
set(SK_DEB_RUNTIME "libsockit${SK_SOVERSION}")

set(CPACK_PACKAGE_NAME sockit)
set(CPACK_PACKAGE_VENDOR "sockit")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# Each package's description below starts with its own synopsis line.
# CPackDeb puts CPACK_PACKAGE_DESCRIPTION_SUMMARY in front of it unless the
# summary is CPack's default text, so it is set to exactly that.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CMAKE_PROJECT_NAME} built using CMake")
set(SK_DEB_MAINTAINER "sockit maintainers <maintainers@sockit.invalid>"
    CACHE STRING "Maintainer field of the Debian packages")
set(CPACK_PACKAGE_CONTACT "${SK_DEB_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# sockit.pc is written by an install(CODE) rule from CMAKE_INSTALL_PREFIX,
# which is /usr only when CPack stages the files through DESTDIR.
set(CPACK_SET_DESTDIR ON)
set(CPACK_COMPONENTS_ALL runtime dev tools)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(SK_DEB_VERSION "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")
# dpkg-shlibdeps (package dpkg-dev) and file(1) compute the packages'
# library dependencies and the runtime package's shlibs file; without them
# the dependencies are the fixed list below.
find_program(SK_DPKG_SHLIBDEPS dpkg-shlibdeps)
find_program(SK_FILE_PROGRAM file)
if(SK_DPKG_SHLIBDEPS AND SK_FILE_PROGRAM)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  # The runtime package records its shlibs, so packages built against it
  # get a "libsockit0.1 (>= 0.1.0-1)" dependency from dpkg-shlibdeps.
  set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
  set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
else()
  message(STATUS "dpkg-shlibdeps or file not found (packages dpkg-dev, file): "
                 "the Debian packages get a fixed dependency list")
  set(SK_DEB_LIBS "libc6 (>= 2.34)")
  if(SK_WITH_TLS)
    string(APPEND SK_DEB_LIBS ", libssl3 (>= 3.0.0)")
  endif()
  if(SK_HAVE_URING)
    string(APPEND SK_DEB_LIBS ", liburing2")
  endif()
  if(CARES_FOUND)
    string(APPEND SK_DEB_LIBS ", libc-ares2")
  endif()
  set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "${SK_DEB_LIBS}")
  set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS "${SK_DEB_LIBS}")
endif()

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME ${SK_DEB_RUNTIME})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "socket toolkit for C (shared library)
libsockit gives C programs TCP, UDP and Unix-domain sockets over IPv4 and
IPv6: synchronous calls with timeouts, completion-based asynchronous
operations on an event loop (epoll, poll, io_uring), typed socket options,
framing codecs, graceful shutdown and TLS (OpenSSL 3).
.
This package contains the shared library.")

set(SK_DEB_DEV_DEPENDS "${SK_DEB_RUNTIME} (= ${SK_DEB_VERSION})")
if(SK_WITH_TLS)
  string(APPEND SK_DEB_DEV_DEPENDS ", libssl-dev (>= 3)")
endif()
if(SK_HAVE_URING)
  string(APPEND SK_DEB_DEV_DEPENDS ", liburing-dev")
endif()
if(CARES_FOUND)
  string(APPEND SK_DEB_DEV_DEPENDS ", libc-ares-dev")
endif()
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libsockit-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${SK_DEB_DEV_DEPENDS}")
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS "pkg-config, cmake")
set(CPACK_DEBIAN_DEV_DESCRIPTION "socket toolkit for C (development files)
libsockit gives C programs TCP, UDP and Unix-domain sockets over IPv4 and
IPv6: synchronous calls with timeouts, completion-based asynchronous
operations on an event loop, typed socket options, framing codecs, graceful
shutdown and TLS.
.
This package contains the headers, the static library, sockit.pc for
pkg-config, the CMake package (find_package(sockit)) and the section-3
manual pages.")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME sockit-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION net)
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "echo/chat/file server and client with TLS and a load generator
sockit-server serves echo, discard, chargen, chat and files over TCP, UDP,
Unix sockets and TLS to many clients at once, with length-prefixed and
line framing (ISO 8583 style hosts included). sockit-client sends text,
JSON, binary records or files, runs interactively like netcat and
generates load with latency percentiles.")

include(CPack)
