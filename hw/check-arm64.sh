#!/usr/bin/env bash
# check-arm64.sh: prove the project installs and passes on arm64 Debian Bookworm (the OS under
# Raspberry Pi OS Bookworm 64-bit) without owning a board.
#
# What it does, in order:
#   1. registers qemu-aarch64 with the kernel's binfmt_misc (F flag, so the emulator works inside
#      a chroot); stops with a clear message if the kernel refuses;
#   2. builds (once, then cached) an arm64 Debian Bookworm root with debootstrap, holding only
#      python3, python3-venv and python3-pip from Debian;
#   3. copies the repository's committed HEAD into it (`git archive`: no untracked files, no
#      /work/shared beside it, exactly what a fresh clone has);
#   4. runs, as an unprivileged user inside the root, the README's two commands exactly as the
#      README spells them (they are read from README.md, so they cannot drift apart):
#      install + test suite, then install + `dispenser simulate`;
#   5. prints PASS/FAIL per step with timings and the resolved versions of the dependencies.
#
# The emulated CPU is a Cortex-A72 (the Raspberry Pi 4's core, ARMv8.0: no dot-product, no fp16
# arithmetic, no LSE atomics) unless DISPENSER_ARM64_CPU says otherwise: a wheel that uses an
# instruction the Pi 4 lacks dies with SIGILL here as it would on the board. qemu-user does not
# emulate /proc/cpuinfo (the host's x86 text shows through), and libraries that read it to pick
# kernels (onnxruntime's cpuinfo) crash on that mix of x86 text and host sysfs; so the root sees
# the /proc/cpuinfo the emulated board would show (same CPU part, features, one entry per CPU).
#
# Too slow for every CI run (see docs/deploy.md, section "arm64 check", for measured times):
# run it before each release and record the result there.
#
# Needs: root, Debian/Ubuntu host with `apt-get install qemu-user-static debootstrap
# binfmt-support`, network access to the Debian mirror and PyPI.
#
# Environment:
#   DISPENSER_ARM64_ROOT    where the arm64 root lives (default /var/tmp/dispenser-arm64/bookworm)
#   DISPENSER_ARM64_MIRROR  Debian mirror (default: the host's first deb.debian.org-style URI)
#   DISPENSER_ARM64_CPU     emulated core: cortex-a72 (Pi 4, default) or cortex-a76 (Pi 5)
#   DISPENSER_ARM64_REF     git revision to test (default HEAD)
#   DISPENSER_ARM64_FRESH   1 = delete the cached root (and its pip cache) and build from scratch
#
# Exit status: 0 all steps passed; 1 a step failed; 2 this machine cannot run the check
# (not root, tools missing, kernel refuses binfmt_misc).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO
readonly ROOT="${DISPENSER_ARM64_ROOT:-/var/tmp/dispenser-arm64/bookworm}"
readonly CPU="${DISPENSER_ARM64_CPU:-cortex-a72}"
readonly REF="${DISPENSER_ARM64_REF:-HEAD}"
COMMIT=""  # REF resolved once in preflight: other commits landing meanwhile do not mix in
readonly SUITE=bookworm
# Bumping this list invalidates the cached root (the stamp records it).
readonly PACKAGES="python3,python3-venv,python3-pip,ca-certificates"
readonly USER_NAME=builder
readonly USER_HOME="/home/${USER_NAME}"
readonly WORKDIR="${USER_HOME}/dispenser"
readonly DEPENDENCIES="numpy onnxruntime opencv-python-headless numba pyserial"

STEP_NAMES=()
STEP_RESULTS=()
STEP_SECONDS=()
STEP_NOTES=()
MOUNTED=()

die() {  # die EXIT_CODE MESSAGE...: one clear line, no trace
    local code="$1"
    shift
    echo "check-arm64: error: $*" >&2
    exit "${code}"
}

say() { echo "check-arm64: $*"; }

now() { date +%s.%N; }

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }

record() {  # record NAME RESULT SECONDS [NOTE]
    STEP_NAMES+=("$1")
    STEP_RESULTS+=("$2")
    STEP_SECONDS+=("$3")
    STEP_NOTES+=("${4:-}")
}

cleanup() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount -l "${MOUNTED[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

default_mirror() {
    # The host's own Debian mirror (first URI in deb822 or one-line sources naming /debian).
    local uri
    uri="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -n1)"
    if [[ -z "${uri}" ]]; then
        uri="$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
            | grep -E '/debian/?$' | head -n1)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${DISPENSER_ARM64_MIRROR:-$(default_mirror)}"
readonly MIRROR

preflight() {
    [[ "$(id -u)" -eq 0 ]] || die 2 "must run as root (debootstrap, chroot and binfmt_misc need it)"
    local tool
    for tool in debootstrap chroot git tar flock; do
        command -v "${tool}" >/dev/null \
            || die 2 "'${tool}' not found; install: apt-get install qemu-user-static debootstrap binfmt-support git"
    done
    [[ "${CPU}" == cortex-a72 || "${CPU}" == cortex-a76 ]] \
        || die 2 "DISPENSER_ARM64_CPU must be cortex-a72 (Raspberry Pi 4) or cortex-a76 (Pi 5), not '${CPU}'"
    [[ -x /usr/bin/qemu-aarch64-static ]] \
        || die 2 "/usr/bin/qemu-aarch64-static not found; install: apt-get install qemu-user-static"
    COMMIT="$(git -C "${REPO}" rev-parse --verify --quiet "${REF}^{commit}")" \
        || die 2 "git revision '${REF}' not found in ${REPO} (nothing committed yet?)"
    readonly COMMIT
}

# Step 1 ---------------------------------------------------------------------------------------
register_binfmt() {
    local dir=/proc/sys/fs/binfmt_misc entry=/proc/sys/fs/binfmt_misc/qemu-aarch64 err
    if [[ ! -e "${dir}/register" ]]; then
        err="$(mount -t binfmt_misc binfmt_misc "${dir}" 2>&1)" \
            || die 2 "the kernel refused to mount binfmt_misc at ${dir}: ${err:-no message}." \
                "arm64 binaries cannot be emulated on this machine (a container without" \
                "CAP_SYS_ADMIN, or a kernel without CONFIG_BINFMT_MISC); run the check on a" \
                "Linux host or VM where you are root."
    fi
    if [[ -e "${entry}" ]] && ! grep -q '^flags:.*F' "${entry}"; then
        # Registered without F: the interpreter path would not exist inside the chroot.
        echo -1 >"${entry}" 2>/dev/null || die 2 "cannot replace the qemu-aarch64 entry without F flag"
    fi
    if [[ ! -e "${entry}" ]]; then
        command -v update-binfmts >/dev/null && update-binfmts --enable qemu-aarch64 >/dev/null 2>&1
    fi
    if [[ ! -e "${entry}" ]]; then
        local magic='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
        local mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
        err="$( { printf '%s\n' ":qemu-aarch64:M::${magic}:${mask}:/usr/bin/qemu-aarch64-static:F" \
            >"${dir}/register"; } 2>&1)" \
            || die 2 "the kernel refused to register qemu-aarch64 in binfmt_misc: ${err:-no message}"
    fi
    [[ "$(cat "${dir}/status")" == enabled ]] || die 2 "binfmt_misc is disabled (${dir}/status)"
    grep -q '^enabled' "${entry}" || die 2 "binfmt_misc entry qemu-aarch64 exists but is disabled"
    grep -q '^flags:.*F' "${entry}" \
        || die 2 "binfmt_misc entry qemu-aarch64 lacks the F flag; remove it (echo -1 > ${entry})"
    say "binfmt_misc: qemu-aarch64 registered ($(grep '^interpreter' "${entry}"), $(grep '^flags' "${entry}"))"
}

# Step 2 ---------------------------------------------------------------------------------------
stamp_text() { echo "suite=${SUITE} arch=arm64 variant=minbase packages=${PACKAGES} user=${USER_NAME}"; }

build_root() {
    local stamp="${ROOT}/.dispenser-arm64-stamp"
    if [[ "${DISPENSER_ARM64_FRESH:-0}" == 1 && -d "${ROOT}" ]]; then
        say "DISPENSER_ARM64_FRESH=1: deleting ${ROOT}"
        cleanup
        MOUNTED=()
        rm -rf --one-file-system "${ROOT}"
    fi
    if [[ -f "${stamp}" && "$(cat "${stamp}")" == "$(stamp_text)" ]]; then
        say "arm64 root: cached at ${ROOT} ($(cat "${ROOT}/etc/debian_version" 2>/dev/null))"
        return 0
    fi
    [[ -e "${ROOT}" ]] && rm -rf --one-file-system "${ROOT}"
    mkdir -p "$(dirname "${ROOT}")"
    say "arm64 root: debootstrap ${SUITE} from ${MIRROR} into ${ROOT} (takes minutes under emulation)"
    local log="${ROOT}.debootstrap.log"
    if ! debootstrap --arch=arm64 --variant=minbase --include="${PACKAGES}" \
        "${SUITE}" "${ROOT}" "${MIRROR}" >"${log}" 2>&1; then
        tail -n 20 "${log}" >&2
        echo "check-arm64: debootstrap failed; full log: ${log}" >&2
        return 1
    fi
    chroot "${ROOT}" useradd --create-home --shell /bin/bash "${USER_NAME}" || return 1
    stamp_text >"${stamp}"
}

# Helpers for steps 3-5 -------------------------------------------------------------------------
mount_into_root() {
    local target
    for target in proc sys dev dev/pts; do
        mkdir -p "${ROOT}/${target}"
        if mountpoint -q "${ROOT}/${target}"; then continue; fi
        case "${target}" in
            proc) mount -t proc proc "${ROOT}/proc" ;;
            sys) mount -t sysfs sysfs "${ROOT}/sys" ;;
            dev) mount --bind /dev "${ROOT}/dev" ;;
            dev/pts) mount -t devpts -o newinstance,ptmxmode=0666 devpts "${ROOT}/dev/pts" ;;
        esac || die 1 "cannot mount ${target} into ${ROOT}"
        MOUNTED+=("${ROOT}/${target}")
    done
    present_board_cpuinfo
    # /dev/shm for Python's multiprocessing and semaphores.
    mkdir -p "${ROOT}/dev/shm"
    # Name resolution for pip (copied, not bound: the root stays self-contained).
    cp -L /etc/resolv.conf "${ROOT}/etc/resolv.conf"
    trust_host_local_cas
}

board_cpuinfo() {  # board_cpuinfo: /proc/cpuinfo text of the board whose core is emulated
    # Values as Raspberry Pi OS shows them on a Pi 4 (BCM2711) and a Pi 5 (BCM2712).
    local part variant revision features model n i
    case "${CPU}" in
        cortex-a72)
            part=0xd08 variant=0x0 revision=3 model="Raspberry Pi 4 Model B Rev 1.4"
            features="fp asimd evtstrm crc32 cpuid" ;;
        cortex-a76)
            part=0xd0b variant=0x4 revision=1 model="Raspberry Pi 5 Model B Rev 1.0"
            features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid"
            features+=" asimdrdm lrcpc dcpop asimddp" ;;
    esac
    n="$(nproc --all)"  # as many entries as the (host) sysfs the root sees lists
    for ((i = 0; i < n; i++)); do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' \
            "${i}" "${features}"
        printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
            "${variant}" "${part}" "${revision}"
    done
    printf 'Model\t\t: %s\n' "${model}"
}

present_board_cpuinfo() {
    local file="${ROOT}.cpuinfo"
    board_cpuinfo >"${file}"
    if ! mountpoint -q "${ROOT}/proc/cpuinfo" 2>/dev/null; then
        mount --bind "${file}" "${ROOT}/proc/cpuinfo" || die 1 "cannot present /proc/cpuinfo in ${ROOT}"
        MOUNTED+=("${ROOT}/proc/cpuinfo")
    fi
}

trust_host_local_cas() {
    # Behind a TLS-inspecting proxy the host trusts extra CAs from
    # /usr/local/share/ca-certificates; the root needs the same trust or pip cannot reach PyPI.
    # Debian's pip (also inside a venv) verifies against /etc/ssl/certs/ca-certificates.crt.
    local cas=(/usr/local/share/ca-certificates/*.crt) target="${ROOT}/usr/local/share/ca-certificates"
    [[ -e "${cas[0]}" ]] || return 0
    if diff -rq /usr/local/share/ca-certificates "${target}" >/dev/null 2>&1; then
        return 0  # already trusted on an earlier run (update-ca-certificates is slow emulated)
    fi
    mkdir -p "${target}"
    cp "${cas[@]}" "${target}/"
    if ! chroot "${ROOT}" /usr/sbin/update-ca-certificates >/dev/null 2>&1; then
        rm -rf "${target}"  # so the next run tries again
        die 1 "update-ca-certificates failed inside ${ROOT}"
    fi
    say "trust: ${#cas[@]} local CA certificate(s) from the host added to the arm64 root"
}

as_builder() {  # as_builder COMMAND: run a shell command line as the unprivileged user, in WORKDIR
    chroot --userspec="${USER_NAME}:${USER_NAME}" "${ROOT}" /usr/bin/env -i \
        HOME="${USER_HOME}" USER="${USER_NAME}" LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/bin:/usr/bin:/bin QEMU_CPU="${CPU}" \
        /bin/sh -c "cd '${WORKDIR}' && $1"
}

readme_command() {  # readme_command PATTERN: the single README shell line matching PATTERN
    local matches count
    matches="$(awk '/^```(sh|bash|shell)?$/ { inside = !inside; next } inside' "${ROOT}${WORKDIR}/README.md" \
        | grep -E -- "$1")"
    count="$(printf '%s' "${matches}" | grep -c .)"
    if [[ "${count}" -ne 1 ]]; then
        echo "check-arm64: error: README.md must hold exactly one shell line matching /$1/" \
            "in a code block; found ${count}" >&2
        return 1
    fi
    printf '%s' "${matches}"
}

copy_repo() {
    rm -rf --one-file-system "${ROOT}${WORKDIR}"
    mkdir -p "${ROOT}${WORKDIR}"
    git -C "${REPO}" archive --format=tar "${COMMIT}" | tar -x -C "${ROOT}${WORKDIR}" || return 1
    chroot "${ROOT}" chown -R "${USER_NAME}:${USER_NAME}" "${WORKDIR}"
    say "source: ${REF} = ${COMMIT:0:12} ($(git -C "${REPO}" log -1 --format='%cs %s' "${COMMIT}")) copied to ${WORKDIR}"
}

stamp_lines() {  # stamp_lines START: prefix each stdin line with whole seconds since START
    local line
    while IFS= read -r line; do
        printf '%5ss %s\n' "$(elapsed "$1" "$(now)")" "${line}"
    done
}

run_step() {  # run_step NAME COMMAND: run as builder, log to a file, record result and time
    local name="$1" cmd="$2" log start end rc
    log="${ROOT}.$(echo "${name}" | tr -c 'a-z0-9\n' '-').log"
    say "${name}: ${cmd}"
    say "  (output: ${log})"
    start="$(now)"
    # Each output line is prefixed with the seconds since the step started, so the log shows
    # how long pip took before the tests (or the simulation) began.
    as_builder "${cmd}" 2>&1 | stamp_lines "${start}" >"${log}"
    rc=${PIPESTATUS[0]}
    end="$(now)"
    local installed note=""
    installed="$(grep -m1 -E '^ *[0-9]+s Successfully installed' "${log}" | awk '{print $1}')"
    [[ -n "${installed}" ]] && note="pip install done after ${installed}"
    if [[ ${rc} -eq 0 ]]; then
        record "${name}" PASS "$(elapsed "${start}" "${end}")" "${note}"
    else
        record "${name}" "FAIL (exit ${rc})" "$(elapsed "${start}" "${end}")" "${note}"
        echo "---- last 30 lines of ${log} ----" >&2
        tail -n 30 "${log}" >&2
        echo "----" >&2
    fi
    return "${rc}"
}

report_versions() {
    as_builder ".venv/bin/python - ${DEPENDENCIES} <<'EOF'
import platform, sys
from importlib import metadata
print(f'python {platform.python_version()} on {platform.machine()}')
for name in sys.argv[1:]:
    try:
        print(f'{name} {metadata.version(name)}')
    except metadata.PackageNotFoundError:
        print(f'{name} NOT INSTALLED')
EOF"
}

summary() {
    local i overall=PASS
    echo
    echo "=================== arm64 check summary ==================="
    echo "host:    $(uname -srm), qemu $(/usr/bin/qemu-aarch64-static --version | head -n1 | awk '{print $3}'), cpu model ${CPU}"
    echo "root:    ${ROOT} (Debian $(cat "${ROOT}/etc/debian_version" 2>/dev/null || echo '?'), mirror ${MIRROR})"
    echo "source:  ${COMMIT:0:12} ($(git -C "${REPO}" log -1 --format=%cs "${COMMIT}"))"
    for ((i = 0; i < ${#STEP_NAMES[@]}; i++)); do
        printf '%-30s %-14s %6ss  %s\n' "${STEP_NAMES[i]}" "${STEP_RESULTS[i]}" "${STEP_SECONDS[i]}" \
            "${STEP_NOTES[i]}"
        [[ "${STEP_RESULTS[i]}" == PASS ]] || overall=FAIL
    done
    if [[ -n "${VERSIONS:-}" ]]; then
        echo "versions:"
        printf '  %s\n' "${VERSIONS//$'\n'/$'\n'  }"
    fi
    echo "date:    $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "RESULT:  ${overall}"
    echo "==========================================================="
    [[ "${overall}" == PASS ]]
}

take_lock() {
    # Two runs on one root would delete each other's source tree and venv mid-test.
    mkdir -p "$(dirname "${ROOT}")"
    exec 9>"${ROOT}.lock"
    flock -n 9 || die 2 "another check-arm64 run is using ${ROOT} (lock ${ROOT}.lock);" \
        "wait for it or set DISPENSER_ARM64_ROOT to another folder"
}

main() {
    preflight
    take_lock
    local start
    start="$(now)"
    register_binfmt
    record "binfmt registration" PASS "$(elapsed "${start}" "$(now)")"

    start="$(now)"
    if build_root; then
        record "arm64 root (debootstrap)" PASS "$(elapsed "${start}" "$(now)")"
    else
        record "arm64 root (debootstrap)" FAIL "$(elapsed "${start}" "$(now)")"
        summary
        exit 1
    fi
    mount_into_root
    local machine
    machine="$(chroot "${ROOT}" /usr/bin/env QEMU_CPU="${CPU}" /bin/uname -m 2>&1)"
    [[ "${machine}" == aarch64 ]] || die 1 "the arm64 root does not run as aarch64 (uname -m said: ${machine})"

    copy_repo || die 1 "could not copy ${REF} of ${REPO} into the arm64 root"
    local test_cmd simulate_cmd failed=0
    test_cmd="$(readme_command '&& pytest$')" || exit 1
    simulate_cmd="$(readme_command 'dispenser simulate')" || exit 1

    run_step "install + test suite" "${test_cmd}" || failed=1
    VERSIONS="$(report_versions 2>&1)"
    run_step "install + dispenser simulate" "${simulate_cmd}" || failed=1

    summary || failed=1
    exit "${failed}"
}

main "$@"
