# One helper per kind of target, so every library, test and proto set is built the same way.

set(WL_WARNINGS -Wall -Wextra -Werror -Wno-unused-parameter)
# GCC 12 at -O3 (CMAKE_BUILD_TYPE=Release) warns that std::string's own memcpy may overlap when a
# string is built by operator+ (GCC bugs 105329 and 105651, fixed in 13): 47 such false reports,
# none in our code, stopped a Release build. The default build (-O2) does not see them.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  list(APPEND WL_WARNINGS $<$<CONFIG:Release>:-Wno-restrict>)
endif()
# Every executable carries a GNU build ID (Debian's toolchain adds one anyway): the ledger reads
# only checkpoints its own build wrote, and tells builds apart by it (wattledger/base/build_id.h).
add_link_options(-Wl,--build-id)
# WL_FUZZ: the libFuzzer build of tests/fuzz (scripts/fuzz.sh). Everything is compiled with
# coverage for the fuzzer and under AddressSanitizer and UndefinedBehaviorSanitizer.
option(WL_FUZZ "build tests/fuzz as libFuzzer binaries (needs clang)" OFF)
if(WL_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "WL_FUZZ needs clang (CC=clang CXX=clang++), not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
if(WL_SANITIZE)
  set(WL_SAN_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_compile_options(${WL_SAN_FLAGS})
  add_link_options(${WL_SAN_FLAGS})
endif()

# wl_use_jemalloc(target): the service binaries allocate with jemalloc (Debian's libjemalloc).
# A ledger posting makes a few dozen small allocations across threads (the consumer allocates,
# a writer frees); glibc's malloc spent about a fifth of the ledger's CPU on them and jemalloc
# about a third less overall (loadtest/README.md). Sanitizer builds keep their own allocator.
# jemalloc_conf.cc sets its options: no transparent huge pages (see there).
find_library(WL_JEMALLOC NAMES jemalloc REQUIRED)
function(wl_use_jemalloc target)
  if(NOT WL_SANITIZE)
    target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/cmake/jemalloc_conf.cc)
    target_link_libraries(${target} PRIVATE ${WL_JEMALLOC})
  endif()
endfunction()

# Where the tests and the benchmarks' smoke runs make their scratch directories ($TMPDIR, read by
# TempDir, the benchmarks and pg_ledger.sh). By default that is /dev/shm when it is a tmpfs with
# WL_TEST_TMPDIR_MIN_MIB free; else the tests keep the $TMPDIR (or /tmp) they run with. The suite
# fsyncs thousands of times; on a CI machine whose disk took about 100 ms a sync, four tests ran
# out of time. Nothing a test checks is lost on tmpfs: a kill -9 leaves the page cache, and no test
# can cut the power. The benchmarks themselves (`make bench`) keep writing to the disk.
set(WL_TEST_TMPDIR "" CACHE PATH "parent of the tests' scratch dirs (empty: /dev/shm if it has room)")
set(WL_TEST_TMPDIR_MIN_MIB 2048 CACHE STRING "free MiB /dev/shm needs to be chosen for the tests")
set(WL_TEST_SCRATCH "${WL_TEST_TMPDIR}")
if(NOT WL_TEST_SCRATCH)
  execute_process(COMMAND df --output=fstype,avail -B1M /dev/shm
                  OUTPUT_VARIABLE wl_shm_df RESULT_VARIABLE wl_shm_rc ERROR_QUIET)
  if(wl_shm_rc EQUAL 0 AND wl_shm_df MATCHES "\ntmpfs +([0-9]+)" AND
     CMAKE_MATCH_1 GREATER_EQUAL WL_TEST_TMPDIR_MIN_MIB)
    set(WL_TEST_SCRATCH /dev/shm)
  endif()
endif()
if(WL_TEST_SCRATCH)
  message(STATUS "tests make their scratch dirs under ${WL_TEST_SCRATCH}")
  set(WL_TEST_SCRATCH_ENV "TMPDIR=${WL_TEST_SCRATCH}")
else()
  message(STATUS "tests make their scratch dirs under the TMPDIR they run with (or /tmp)")
  set(WL_TEST_SCRATCH_ENV)
endif()

# wl_test_environment(test ...): the environment every test runs in, plus the given VAR=value.
function(wl_test_environment test)
  set_property(TEST ${test} PROPERTY ENVIRONMENT ${WL_TEST_SCRATCH_ENV} ${ARGN})
endfunction()

# wl_library(NAME name SRCS ... DEPS ...): a static library with include/ as its public headers.
function(wl_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_library(wl_${ARG_NAME} STATIC ${ARG_SRCS})
  target_include_directories(wl_${ARG_NAME} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_compile_options(wl_${ARG_NAME} PRIVATE ${WL_WARNINGS})
  target_link_libraries(wl_${ARG_NAME} PUBLIC ${ARG_DEPS})
endfunction()

# wl_test(NAME name SRCS ... DEPS ... [LABELS ...] [TIMEOUT s]): a GoogleTest binary registered with CTest.
function(wl_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  set_target_properties(${ARG_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  target_compile_options(${ARG_NAME} PRIVATE ${WL_WARNINGS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME})
  set_tests_properties(${ARG_NAME} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
  wl_test_environment(${ARG_NAME} "WL_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
endfunction()

# wl_proto(NAME name PROTOS ... [GRPC] [DEPS ...]): generated code lives only in the build tree.
function(wl_proto)
  cmake_parse_arguments(ARG "GRPC" "NAME" "PROTOS;DEPS" ${ARGN})
  set(srcs)
  set(hdrs)
  set(out ${CMAKE_BINARY_DIR}/gen)
  file(MAKE_DIRECTORY ${out})
  foreach(proto ${ARG_PROTOS})
    get_filename_component(abs ${proto} ABSOLUTE)
    file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR}/proto ${abs})
    string(REGEX REPLACE "\\.proto$" "" base ${rel})
    set(gen ${out}/${base}.pb.cc ${out}/${base}.pb.h)
    set(cmd_args --cpp_out=${out})
    if(ARG_GRPC)
      list(APPEND gen ${out}/${base}.grpc.pb.cc ${out}/${base}.grpc.pb.h)
      list(APPEND cmd_args --grpc_out=${out} --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN})
    endif()
    add_custom_command(
      OUTPUT ${gen}
      COMMAND protobuf::protoc ARGS -I ${PROJECT_SOURCE_DIR}/proto ${cmd_args} ${abs}
      DEPENDS ${abs} protobuf::protoc
      COMMENT "protoc ${rel}")
    foreach(g ${gen})
      if(g MATCHES "\\.cc$")
        list(APPEND srcs ${g})
      endif()
    endforeach()
  endforeach()
  add_library(wl_${ARG_NAME} STATIC ${srcs})
  target_include_directories(wl_${ARG_NAME} PUBLIC ${out})
  target_link_libraries(wl_${ARG_NAME} PUBLIC protobuf::libprotobuf ${ARG_DEPS})
  if(ARG_GRPC)
    target_link_libraries(wl_${ARG_NAME} PUBLIC gRPC::grpc++)
  endif()
endfunction()
