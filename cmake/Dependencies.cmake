# Finds the libraries Flux links; scripts/setup.sh installs every one of them.
find_package(Threads REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(PostgreSQL REQUIRED)
find_package(fmt REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(GTest REQUIRED)
find_package(OpenSSL REQUIRED)
# The flux binary's malloc (gperftools' tcmalloc, as Envoy links it): see src/app/CMakeLists.txt.
find_library(TCMALLOC_LIBRARY NAMES tcmalloc_minimal REQUIRED)

# V8 10.2 from Debian's libnode: the system copy, or the one setup.sh unpacked into third_party/v8.
find_path(V8_INCLUDE_DIR v8.h
  PATHS ${CMAKE_SOURCE_DIR}/third_party/v8/usr/include/nodejs/deps/v8/include
        /usr/include/nodejs/deps/v8/include
  NO_DEFAULT_PATH)
find_library(V8_LIBRARY NAMES node libnode.so.108
  PATHS ${CMAKE_SOURCE_DIR}/third_party/v8/usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu
  NO_DEFAULT_PATH)
if(NOT V8_INCLUDE_DIR OR NOT V8_LIBRARY)
  message(FATAL_ERROR "V8 (libnode-dev) not found: run scripts/setup.sh")
endif()
add_library(v8 INTERFACE)
target_include_directories(v8 SYSTEM INTERFACE ${V8_INCLUDE_DIR})
target_link_libraries(v8 INTERFACE ${V8_LIBRARY})
get_filename_component(V8_LIBRARY_DIR ${V8_LIBRARY} DIRECTORY)
# The binary finds libnode through its rpath, never LD_LIBRARY_PATH.
set(CMAKE_BUILD_RPATH ${V8_LIBRARY_DIR})
set(CMAKE_INSTALL_RPATH ${V8_LIBRARY_DIR})

find_program(ESBUILD esbuild REQUIRED)
