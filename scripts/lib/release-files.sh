# release_tar SRC: writes to stdout a tar stream of what an agent runs from the checkout SRC (its
# packages' sources, the lock file, config, the install script; no tests, benchmarks or
# node_modules). Both the release tarball (scripts/pack.sh) and scripts/install-agent.sh use it,
# so an unpacked release installs exactly as a checkout does.
release_tar () {
  tar -C "$1" --exclude=node_modules --exclude=test -cf - \
    package.json package-lock.json README.md config packages scripts/install-agent.sh scripts/lib/release-files.sh
}
