#!/bin/sh
# factory build shim: installed by the common role, removed by sanitize. invoke-rc.d and
# deb-systemd-invoke ask this script before they start a service from a package's maintainer
# script; 101 means "action not allowed", so no daemon starts inside the build container.
exit 101
