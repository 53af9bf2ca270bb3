# Sourced by the benchmark scripts: installs what is missing, builds swiftpar in release mode
# and sets $swiftpar, and lets Open MPI run as root and oversubscribe, as the tests do.
Launch/setup.sh
swift build -c release --product swiftpar >/dev/null
swiftpar="$(swift build -c release --show-bin-path)/swiftpar"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1
