# Real libFuzzer targets (clang only): make fuzz.
file(GLOB MOAT_FUZZERS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/fuzz/fuzz_*.c)
foreach(src ${MOAT_FUZZERS})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE libmoat)
endforeach()

# The code under test needs coverage instrumentation too, or libFuzzer only sees the harness.
foreach(t IN LISTS MOAT_SUBSYSTEM_TARGETS)
    target_compile_options(${t} PRIVATE -fsanitize=fuzzer-no-link)
endforeach()
