# Install rules: the library (runtime component), everything needed to build
# against it (dev: headers, libsockit.a, the .so link, sockit.pc, the CMake
# package, man3) and the programs (tools: binaries and man1). The components
# are the Debian packages of cmake/packaging.cmake.
include(CMakePackageConfigHelpers)

# What sockitConfig.cmake must find again for the static library: the
# dependencies found through pkg-config, as "<prefix> <module>" pairs.
set(SK_CONFIG_PC_DEPS "")
if(SK_HAVE_URING)
  list(APPEND SK_CONFIG_PC_DEPS "URING liburing")
endif()
if(CARES_FOUND)
  list(APPEND SK_CONFIG_PC_DEPS "CARES libcares")
endif()

set(SK_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/sockit)

install(TARGETS sockit_shared EXPORT sockitTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          COMPONENT runtime NAMELINK_COMPONENT dev)
install(TARGETS sockit_static EXPORT sockitTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(FILES ${PROJECT_SOURCE_DIR}/include/sockit.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sockit
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)
if(EXISTS ${PROJECT_SOURCE_DIR}/docs/man)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/man/
          DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT tools
          FILES_MATCHING PATTERN "*.1")
endif()

# CMake package: sockitConfig.cmake, its version file, the exported targets.
install(EXPORT sockitTargets NAMESPACE sockit:: DESTINATION ${SK_CMAKE_DIR}
        COMPONENT dev)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/sockitConfig.cmake.in
  ${PROJECT_BINARY_DIR}/sockitConfig.cmake INSTALL_DESTINATION ${SK_CMAKE_DIR})
# 0.x: a minor release may break the ABI and API (docs/ABI.md), so only the
# same major.minor is compatible; from 1.0 on, the same major.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(SK_COMPAT SameMinorVersion)
else()
  set(SK_COMPAT SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/sockitConfigVersion.cmake
  COMPATIBILITY ${SK_COMPAT})
install(FILES ${PROJECT_BINARY_DIR}/sockitConfig.cmake
              ${PROJECT_BINARY_DIR}/sockitConfigVersion.cmake
        DESTINATION ${SK_CMAKE_DIR} COMPONENT dev)

# sockit.pc. Its prefix is the one in effect at install time (cmake --install
# --prefix, make install PREFIX=..., CPack), so it is configured twice: now
# for everything else, at install time for the prefix.
set(SK_PC_REQUIRES_PRIVATE "")
if(SK_WITH_TLS)
  list(APPEND SK_PC_REQUIRES_PRIVATE "libssl >= 3.0" "libcrypto >= 3.0")
endif()
if(SK_HAVE_URING)
  list(APPEND SK_PC_REQUIRES_PRIVATE liburing)
endif()
if(CARES_FOUND)
  list(APPEND SK_PC_REQUIRES_PRIVATE libcares)
endif()
list(JOIN SK_PC_REQUIRES_PRIVATE ", " SK_PC_REQUIRES_PRIVATE)
set(SK_PC_PREFIX "@SK_PC_PREFIX@")
configure_file(${CMAKE_CURRENT_LIST_DIR}/sockit.pc.in
               ${PROJECT_BINARY_DIR}/sockit.pc.install @ONLY)
install(CODE "
  set(SK_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${PROJECT_BINARY_DIR}/sockit.pc.install\"
                 \"${PROJECT_BINARY_DIR}/pkgconfig/sockit.pc\" @ONLY)
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\"
       TYPE FILE FILES \"${PROJECT_BINARY_DIR}/pkgconfig/sockit.pc\")
" COMPONENT dev)
