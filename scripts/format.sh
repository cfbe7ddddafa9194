#!/usr/bin/env bash
# Applies .clang-format (Google style, 100 columns) to every tracked C++ file; with --check, only
# reports the files that differ and fails (ctest's Style.SourcesAreClangFormatted runs that).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.h')
if [[ "${1:-}" == "--check" ]]; then
  bad=()
  for f in "${files[@]}"; do
    clang-format --dry-run --Werror "$f" > /dev/null 2>&1 || bad+=("$f")
  done
  if ((${#bad[@]})); then
    printf 'not clang-formatted (run scripts/format.sh): %s\n' "${bad[@]}"
    exit 1
  fi
  echo "clang-format: ${#files[@]} files formatted"
else
  clang-format -i "${files[@]}"
fi
