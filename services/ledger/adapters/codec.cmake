# The codec between the ledger domain and its protobuf contract; included from CMakeLists.txt.
wl_library(NAME ledger_codec SRCS ${CMAKE_CURRENT_LIST_DIR}/codec.cc
  DEPS wl_ledger_domain wl_ledger_proto wl_billing_proto wl_money wl_eventlog)
target_include_directories(wl_ledger_codec PUBLIC ${PROJECT_SOURCE_DIR})
wl_test(NAME ledger_codec_test SRCS ${CMAKE_CURRENT_LIST_DIR}/codec_test.cc DEPS wl_ledger_codec)
