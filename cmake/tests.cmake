# Unit tests: tests/unit/<sub>/test_<module>.c, one executable each.
file(GLOB_RECURSE MOAT_UNIT_TESTS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/unit/*/test_*.c)
foreach(src ${MOAT_UNIT_TESTS})
    get_filename_component(name ${src} NAME_WE)
    get_filename_component(dir ${src} DIRECTORY)
    get_filename_component(sub ${dir} NAME)
    set(target unit_${sub}_${name})
    add_executable(${target} ${src})
    target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/tests/unit)
    target_link_libraries(${target} PRIVATE libmoat)
    add_test(NAME ${sub}/${name} COMMAND ${target})
    set_tests_properties(${sub}/${name} PROPERTIES LABELS unit TIMEOUT 120
        ENVIRONMENT "MOAT_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data")
endforeach()

# Integration tests: pytest files driving the real binary.
file(GLOB MOAT_INTEGRATION_TESTS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/integration/test_*.py)
foreach(src ${MOAT_INTEGRATION_TESTS})
    get_filename_component(name ${src} NAME_WE)
    add_test(NAME integration/${name}
        COMMAND /usr/bin/python3 -m pytest -q -p no:cacheprovider ${src}
        WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}/tests/integration)
    set_tests_properties(integration/${name} PROPERTIES LABELS integration TIMEOUT 600
        ENVIRONMENT "MOAT_BIN=$<TARGET_FILE:moat>;MOAT_SOURCE_DIR=${PROJECT_SOURCE_DIR};MOAT_BUILD_DIR=${PROJECT_BINARY_DIR}")
endforeach()

# Scanners that take tens of seconds carry the "slow" label too: `ctest -LE slow` leaves them out while
# iterating. testssl.sh takes 30-50 s against an ASan build; its own timeouts bound it well below this.
set_tests_properties(integration/test_ca_testssl PROPERTIES LABELS "integration;slow" TIMEOUT 400)

# Every fuzz harness is also built as a replayer of its seed corpus.
file(GLOB MOAT_FUZZERS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/fuzz/fuzz_*.c)
foreach(src ${MOAT_FUZZERS})
    get_filename_component(name ${src} NAME_WE)
    string(REPLACE "fuzz_" "" corpus ${name})
    add_executable(replay_${corpus} ${src} ${PROJECT_SOURCE_DIR}/fuzz/replay_main.c)
    target_link_libraries(replay_${corpus} PRIVATE libmoat)
    add_test(NAME fuzz-corpus/${corpus}
        COMMAND replay_${corpus} ${PROJECT_SOURCE_DIR}/fuzz/corpus/${corpus})
    set_tests_properties(fuzz-corpus/${corpus} PROPERTIES LABELS fuzz-corpus TIMEOUT 300)
endforeach()

# Banned functions and formatting.
add_test(NAME lint/checksrc COMMAND ${PROJECT_SOURCE_DIR}/scripts/checksrc.sh)
set_tests_properties(lint/checksrc PROPERTIES LABELS unit TIMEOUT 120)

# The gcc release build, warnings as errors (users build with `make`, tests with clang).
add_test(NAME lint/gcc-release COMMAND ${PROJECT_SOURCE_DIR}/scripts/gcc-check.sh)
set_tests_properties(lint/gcc-release PROPERTIES LABELS unit TIMEOUT 900 SKIP_RETURN_CODE 77)

# Arrows point down (cmake/subsystems.cmake): a subsystem's sources cannot even find the header of a
# subsystem above it or beside it that it did not declare. Each probe compiles one #include with exactly
# the include path and definitions of that subsystem's own sources: "no" must fail as file not found,
# "yes" (a declared edge) must compile.
set(MOAT_LAYER_PROBES
    "core pki/pki.h no" "config http/http.h no" "store config/config.h no" "pki store/store.h no"
    "tls pki/pki.h no" "http server/server.h no" "ca keymgr/keymgr.h no" "ca acme/acme.h no"
    "plan server/server.h no" "acme server/server.h no" "server cli/cli.h no" "server doctor/doctor.h no"
    "doctor cli/cli.h no"
    "http config/config.h yes" "keymgr ca/ca.h yes" "server plan/plan.h yes" "cli doctor/doctor.h yes")
file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/layer-probe)
foreach(probe IN LISTS MOAT_LAYER_PROBES)
    string(REPLACE " " ";" probe "${probe}")
    list(GET probe 0 sub)
    list(GET probe 1 header)
    list(GET probe 2 allowed)
    get_filename_component(used ${header} DIRECTORY)
    set(src ${PROJECT_BINARY_DIR}/layer-probe/${sub}-${used}.c)
    file(WRITE ${src} "#include \"${header}\"\n")
    set(name lint/layers/${sub}-includes-${used})
    add_test(NAME ${name} COMMAND ${CMAKE_C_COMPILER} -std=c17 -fsyntax-only
        "-I$<JOIN:$<TARGET_PROPERTY:moat_${sub},INCLUDE_DIRECTORIES>,;-I>"
        "-D$<JOIN:$<TARGET_PROPERTY:moat_${sub},COMPILE_DEFINITIONS>,;-D>" ${src}
        COMMAND_EXPAND_LISTS)
    set_tests_properties(${name} PROPERTIES LABELS unit TIMEOUT 60)
    if(allowed STREQUAL "no")
        string(REPLACE "." "\\." re "${header}")
        set_tests_properties(${name} PROPERTIES PASS_REGULAR_EXPRESSION "${re}.*(No such file|not found)")
    endif()
endforeach()
