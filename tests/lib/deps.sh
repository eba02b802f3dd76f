# Installs the Debian packages sandfs needs to build and test, when missing.
# Sourced by tests/run and mount-helpers/sandfs-local.
sandfs_deps=(build-essential cmake pkg-config libfuse3-dev fuse3 libnng-dev
  libleveldb-dev libsnappy-dev libcmocka-dev libssl-dev nftables attr acl sqlite3 git
  python3 openssl util-linux groff-base)

sandfs_install_deps() {
  local missing=() p
  for p in "${sandfs_deps[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing missing packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
