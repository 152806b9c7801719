# The freestanding world: how Tenon micro-libraries become archives and how images are linked.
#
# A micro-library is compiled with freestanding flags, partially linked into one relocatable
# object, stripped to its explicit export list (exports.syms next to library.yaml; everything
# else becomes local), and archived as lib<name>.a under build/tenon/lib/<arch>/. An image links
# the app's objects with exactly the archives it names, using the platform's linker script.
# Each image's app objects are also archived as lib<image>.a under build/tenon/apps/<arch>/, so
# the controller's image builder can link the same app with the libraries it composes.

get_filename_component(TENON_SOURCE_DIR ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)
set(TENON_ARCH x86_64)
set(TENON_ARCHIVE_DIR ${CMAKE_BINARY_DIR}/tenon/lib/${TENON_ARCH})
set(TENON_APP_ARCHIVE_DIR ${CMAKE_BINARY_DIR}/tenon/apps/${TENON_ARCH})
file(MAKE_DIRECTORY ${TENON_ARCHIVE_DIR} ${TENON_APP_ARCHIVE_DIR} ${TENON_IMAGE_DIR})

set(TENON_FREESTANDING_COMPILE_OPTIONS
  -ffreestanding -fno-exceptions -fno-rtti -fno-threadsafe-statics -fno-use-cxa-atexit
  -fno-stack-protector -fno-pic -fno-pie -mno-red-zone -mgeneral-regs-only -mcmodel=small
  -fno-asynchronous-unwind-tables -fno-unwind-tables -fcf-protection=none
  -ffunction-sections -fdata-sections -fvisibility=hidden -fno-common
  -ffile-prefix-map=${TENON_SOURCE_DIR}=.
  -O2 -Wall -Wextra -Werror)
# Freestanding means no libc and no libgcc: a reference to either is a link error.
set(TENON_FREESTANDING_LINK_OPTIONS
  -nostdlib -static -no-pie -Wl,--gc-sections -Wl,--no-undefined -Wl,--build-id=none
  -Wl,-z,max-page-size=0x1000 -Wl,-z,noexecstack -Wl,--strip-debug)
# One linker script for every platform: the layout is the guest ABI's (tenon/abi.h).
set(TENON_LINKER_SCRIPT ${TENON_SOURCE_DIR}/tenon/plat/image.ld)

find_program(TENON_LD NAMES ld REQUIRED)
find_program(TENON_OBJCOPY NAMES objcopy REQUIRED)
find_program(TENON_AR NAMES ar REQUIRED)

function(_tenon_freestanding_objects target)
  target_compile_options(${target} PRIVATE ${TENON_FREESTANDING_COMPILE_OPTIONS})
  # The build type's flags (-g, -O) are the hosted world's; the freestanding world sets its own.
  set_target_properties(${target} PROPERTIES
    CXX_STANDARD 20 CXX_EXTENSIONS OFF POSITION_INDEPENDENT_CODE OFF
    INTERPROCEDURAL_OPTIMIZATION OFF)
  target_include_directories(${target} PRIVATE ${TENON_SOURCE_DIR}/tenon/include)
endfunction()

# tenon_library(<name> SOURCES <files...> [INCLUDES <dirs...>])
# Builds build/tenon/lib/<arch>/lib<name>.a and the target tenon-lib-<name>.
function(tenon_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;INCLUDES" ${ARGN})
  set(objects tenon-lib-${name}-objects)
  add_library(${objects} OBJECT ${ARG_SOURCES})
  _tenon_freestanding_objects(${objects})
  if(ARG_INCLUDES)
    target_include_directories(${objects} PRIVATE ${ARG_INCLUDES})
  endif()
  set(exports ${CMAKE_CURRENT_SOURCE_DIR}/exports.syms)
  if(NOT EXISTS ${exports})
    message(FATAL_ERROR "Tenon library '${name}' has no exports.syms in ${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  set(relocatable ${CMAKE_CURRENT_BINARY_DIR}/${name}.o)
  set(archive ${TENON_ARCHIVE_DIR}/lib${name}.a)
  add_custom_command(
    OUTPUT ${archive}
    COMMAND ${TENON_LD} -r -o ${relocatable} $<TARGET_OBJECTS:${objects}>
    COMMAND ${TENON_OBJCOPY} --keep-global-symbols=${exports} ${relocatable}
    COMMAND ${CMAKE_COMMAND} -E rm -f ${archive}
    COMMAND ${TENON_AR} rcsD ${archive} ${relocatable}
    DEPENDS ${objects} $<TARGET_OBJECTS:${objects}> ${exports}
    COMMAND_EXPAND_LISTS
    COMMENT "Tenon micro-library ${name} -> lib${name}.a")
  add_custom_target(tenon-lib-${name} ALL DEPENDS ${archive})
  set_property(TARGET tenon-lib-${name} PROPERTY TENON_ARCHIVE ${archive})
endfunction()

# tenon_image(<name> SOURCES <files...> LIBRARIES <micro-library names...> [TIMER]
#             [PLATFORMS <qemu|mortise>...] [OUTPUT_DIR <dir>])
# Links the app with exactly the named micro-libraries plus, for each platform (both unless
# PLATFORMS narrows it), that platform's library and, with TIMER, the timer library that matches
# the platform's engine:
#   qemu     plat-qemu + timer-lapic              -> <dir>/<name>.elf      (any Linux host)
#   mortise  plat-mortise + timer-tscdeadline     -> <dir>/kvm/<name>.elf  (the native KVM engine)
# <dir> is build/images unless OUTPUT_DIR says otherwise. The target tenon-image-<name> builds
# them all; its properties TENON_IMAGE_QEMU and TENON_IMAGE_KVM name the files.
set(TENON_PLATFORM_LIBRARIES_qemu plat-qemu)
set(TENON_TIMER_LIBRARIES_qemu timer-lapic)
set(TENON_IMAGE_SUBDIR_qemu "")
set(TENON_PLATFORM_LIBRARIES_mortise plat-mortise)
set(TENON_TIMER_LIBRARIES_mortise timer-tscdeadline)
set(TENON_IMAGE_SUBDIR_mortise "/kvm")

function(tenon_image name)
  cmake_parse_arguments(ARG "TIMER" "OUTPUT_DIR" "SOURCES;LIBRARIES;PLATFORMS" ${ARGN})
  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR ${TENON_IMAGE_DIR})
  endif()
  if(NOT ARG_PLATFORMS)
    set(ARG_PLATFORMS qemu mortise)
  endif()
  set(objects tenon-image-${name}-objects)
  add_library(${objects} OBJECT ${ARG_SOURCES})
  _tenon_freestanding_objects(${objects})
  set(outputs "")
  foreach(platform IN LISTS ARG_PLATFORMS)
    if(NOT DEFINED TENON_PLATFORM_LIBRARIES_${platform})
      message(FATAL_ERROR "tenon_image(${name}): unknown platform '${platform}'")
    endif()
    set(libraries ${ARG_LIBRARIES} ${TENON_PLATFORM_LIBRARIES_${platform}})
    if(ARG_TIMER)
      list(APPEND libraries ${TENON_TIMER_LIBRARIES_${platform}})
    endif()
    set(archives "")
    set(archive_targets "")
    foreach(library IN LISTS libraries)
      list(APPEND archives ${TENON_ARCHIVE_DIR}/lib${library}.a)
      list(APPEND archive_targets tenon-lib-${library})
    endforeach()
    set(image_dir ${ARG_OUTPUT_DIR}${TENON_IMAGE_SUBDIR_${platform}})
    file(MAKE_DIRECTORY ${image_dir})
    set(image ${image_dir}/${name}.elf)
    add_custom_command(
      OUTPUT ${image}
      COMMAND ${CMAKE_CXX_COMPILER} ${TENON_FREESTANDING_LINK_OPTIONS} -T ${TENON_LINKER_SCRIPT}
              -o ${image} $<TARGET_OBJECTS:${objects}>
              -Wl,--start-group ${archives} -Wl,--end-group
      DEPENDS ${objects} $<TARGET_OBJECTS:${objects}> ${archive_targets} ${archives}
              ${TENON_LINKER_SCRIPT}
      COMMAND_EXPAND_LISTS
      COMMENT "Tenon image ${name}.elf (${platform})")
    list(APPEND outputs ${image})
    if(platform STREQUAL "qemu")
      set(qemu_image ${image})
    else()
      set(kvm_image ${image})
    endif()
  endforeach()
  # The app alone, for images composed later (controller/build): rebuilt from scratch so a
  # removed source does not linger as a stale member.
  set(app_archive ${TENON_APP_ARCHIVE_DIR}/lib${name}.a)
  add_custom_command(
    OUTPUT ${app_archive}
    COMMAND ${CMAKE_COMMAND} -E rm -f ${app_archive}
    COMMAND ${TENON_AR} rcsD ${app_archive} $<TARGET_OBJECTS:${objects}>
    DEPENDS ${objects} $<TARGET_OBJECTS:${objects}>
    COMMAND_EXPAND_LISTS
    COMMENT "Tenon app ${name} -> apps/${TENON_ARCH}/lib${name}.a")
  add_custom_target(tenon-image-${name} ALL DEPENDS ${outputs} ${app_archive})
  set_property(TARGET tenon-image-${name} PROPERTY TENON_IMAGE_QEMU "${qemu_image}")
  set_property(TARGET tenon-image-${name} PROPERTY TENON_IMAGE_KVM "${kvm_image}")
  set_property(TARGET tenon-image-${name} PROPERTY TENON_APP_ARCHIVE ${app_archive})
endfunction()
