# hpcw_modules_load NAME...: load environment modules (Lmod or Environment
# Modules) in a bash that may not have `module` yet: a batch job's shell is
# not a login shell, and hpcwizard's own commands on the login node run
# without the user's profile. Returns 0 when all loaded, 1 when `module load`
# failed (its message is on stderr), 2 when there is no module command.
# The init scripts and `module` itself are not written for `set -eu` or an
# ERR trap: they run without them, and the caller's settings come back after.
hpcw_modules_load() {
    local flags=$- err_trap status=0 init name
    err_trap=$(trap -p ERR)
    trap - ERR
    set +eu
    if ! type module >/dev/null 2>&1; then
        for init in ${MODULESHOME:+"$MODULESHOME/init/bash"} /usr/share/lmod/lmod/init/bash \
                    /usr/share/modules/init/bash /etc/profile.d/lmod.sh /etc/profile.d/modules.sh; do
            if [ -f "$init" ]; then
                # shellcheck disable=SC1090  # the site's own init script
                . "$init"
                if type module >/dev/null 2>&1; then break; fi
            fi
        done
    fi
    if ! type module >/dev/null 2>&1; then
        status=2
    else
        for name in "$@"; do
            module load "$name" || { status=1; break; }
        done
    fi
    case $flags in *e*) set -e ;; esac
    case $flags in *u*) set -u ;; esac
    if [ -n "$err_trap" ]; then eval "$err_trap"; fi
    return $status
}
