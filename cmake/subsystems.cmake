# One static library per subsystem of src/ (DESIGN.md, "Architecture"), each declaring the subsystems it
# uses. Arrows point down only: a front end uses services and libraries, a service uses libraries, a
# library uses core/ and libraries declared before it. The edges are enforced twice:
#   - here, at configure time: a subsystem may only use one declared above it (so the graph has no
#     cycle) and of its own tier or a lower one;
#   - by the compiler: a subsystem's sources see only the headers of what it declared (and what those
#     declared), each subsystem's folder being reachable through its own include root
#     (build/include/<sub>/<sub> -> src/<sub>). An upward #include "sub/x.h" is "file not found".
# tests/unit, fuzz/ and the tools link libmoat, every subsystem at once.
set(MOAT_TIERS core library service frontend)
set(MOAT_INCLUDE_ROOT ${PROJECT_BINARY_DIR}/include)
set(MOAT_SUBSYSTEMS "")

# moat_subsystem(<sub> <tier> [USES <sub>...] [LIBS <external target>...])
function(moat_subsystem sub tier)
    cmake_parse_arguments(PARSE_ARGV 2 arg "" "" "USES;LIBS")
    list(FIND MOAT_TIERS ${tier} rank)
    if(rank LESS 0)
        message(FATAL_ERROR "src/${sub}: tier \"${tier}\" is none of ${MOAT_TIERS}")
    endif()
    set(deps "")
    foreach(dep IN LISTS arg_USES)
        if(NOT TARGET moat_${dep})
            message(FATAL_ERROR "src/${sub} uses src/${dep}, which is not declared before it in "
                "cmake/subsystems.cmake: declare the lower subsystem first (a cycle cannot be declared)")
        endif()
        get_target_property(dep_rank moat_${dep} MOAT_TIER_RANK)
        get_target_property(dep_tier moat_${dep} MOAT_TIER)
        if(dep_rank GREATER rank)
            message(FATAL_ERROR "src/${sub} (${tier}) may not use src/${dep} (${dep_tier}): arrows point "
                "down only (DESIGN.md, Architecture); move what it needs into a ${tier} or lower")
        endif()
        list(APPEND deps moat_${dep})
    endforeach()
    file(GLOB srcs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${sub}/*.c)
    add_library(moat_${sub} STATIC ${srcs})
    set_target_properties(moat_${sub} PROPERTIES MOAT_TIER ${tier} MOAT_TIER_RANK ${rank})
    file(MAKE_DIRECTORY ${MOAT_INCLUDE_ROOT}/${sub})
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/src/${sub} ${MOAT_INCLUDE_ROOT}/${sub}/${sub} SYMBOLIC)
    target_include_directories(moat_${sub} PUBLIC ${MOAT_INCLUDE_ROOT}/${sub})
    target_link_libraries(moat_${sub} PUBLIC moat_flags ${deps} ${arg_LIBS})
    set(MOAT_SUBSYSTEMS ${MOAT_SUBSYSTEMS} ${sub} PARENT_SCOPE)
endfunction()

moat_subsystem(core core LIBS OpenSSL::Crypto Threads::Threads)
# libraries: no knowledge of services or front ends
moat_subsystem(config library USES core LIBS PkgConfig::YAML PkgConfig::CRYPT)
moat_subsystem(store library USES core LIBS SQLite::SQLite3)
moat_subsystem(pki library USES core)
moat_subsystem(tls library USES core LIBS OpenSSL::SSL)
moat_subsystem(http library USES core config LIBS OpenSSL::SSL PkgConfig::CRYPT)
moat_subsystem(import library USES core pki)
# services: the one place each rule lives
moat_subsystem(plan service USES core config store pki http)
moat_subsystem(ca service USES core config pki store plan)
moat_subsystem(keymgr service USES core config pki store tls http import plan ca)
moat_subsystem(acme service USES core config store pki http keymgr ca LIBS PkgConfig::JANSSON resolv)
# front ends: parse input, call services, print or serve. cli dispatches to the others; doctor uses the
# server's upstream probe (moat_server_check_upstreams), which serve --check shares.
moat_subsystem(server frontend USES core config store pki tls http plan ca acme
    LIBS PkgConfig::JANSSON PkgConfig::NGHTTP2)
moat_subsystem(doctor frontend USES core config store pki plan acme server)
moat_subsystem(cli frontend USES core config store pki tls import plan keymgr ca acme server doctor
    LIBS SQLite::SQLite3 PkgConfig::YAML PkgConfig::JANSSON)

# Every folder of src/ is a declared subsystem: a new one cannot join without its edges.
file(GLOB MOAT_SRC_DIRS LIST_DIRECTORIES true ${PROJECT_SOURCE_DIR}/src/*)
foreach(d IN LISTS MOAT_SRC_DIRS)
    get_filename_component(sub ${d} NAME)
    if(IS_DIRECTORY ${d} AND NOT sub IN_LIST MOAT_SUBSYSTEMS)
        message(FATAL_ERROR "src/${sub} is not a subsystem: declare it in cmake/subsystems.cmake with "
            "moat_subsystem(${sub} <tier> USES ...)")
    endif()
endforeach()

# Everything at once, for the tests, fuzzers and tools (their code may use any layer).
add_library(libmoat INTERFACE)
list(TRANSFORM MOAT_SUBSYSTEMS PREPEND moat_ OUTPUT_VARIABLE MOAT_SUBSYSTEM_TARGETS)
target_link_libraries(libmoat INTERFACE ${MOAT_SUBSYSTEM_TARGETS})
