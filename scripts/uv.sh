# Sourced by scripts/bootstrap, scripts/lock and scripts/test: sets $UV to a pinned uv.
# The pin is here, and only here; the venv holding it lives in the cache, outside the repo.
UV_VERSION=0.13.8
_uv_venv="${FLOWD_TOOLS:-$HOME/.cache/flowd-tools}/uv-$UV_VERSION"
if [ ! -x "$_uv_venv/bin/uv" ]; then
  rm -rf "$_uv_venv"
  "${PYTHON:-python3}" -m venv "$_uv_venv"
  "$_uv_venv/bin/pip" install -q "uv==$UV_VERSION"
fi
UV="$_uv_venv/bin/uv"
export UV_PYTHON_DOWNLOADS=never   # use the machine's python3, never a downloaded interpreter
