/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one place that knows the service's D-Bus error names. */

#define LV_ERROR(name) "org.example.LuksVolume1.Error." name

#define LV_ERROR_NO_SUCH_DOMAIN     LV_ERROR("NoSuchDomain")
#define LV_ERROR_DOMAIN_NOT_RUNNING LV_ERROR("DomainNotRunning")
#define LV_ERROR_NOT_LUKS           LV_ERROR("NotLuks")
#define LV_ERROR_BAD_PASSPHRASE     LV_ERROR("BadPassphrase")
#define LV_ERROR_ALREADY_ATTACHED   LV_ERROR("AlreadyAttached")
#define LV_ERROR_TARGET_IN_USE      LV_ERROR("TargetInUse")
#define LV_ERROR_NO_SUCH_VOLUME     LV_ERROR("NoSuchVolume")
#define LV_ERROR_NOT_SUPPORTED      LV_ERROR("NotSupported")
#define LV_ERROR_BUSY               LV_ERROR("Busy")
#define LV_ERROR_IN_USE             LV_ERROR("InUse")
#define LV_ERROR_GUEST_REFUSED      LV_ERROR("GuestRefused")
#define LV_ERROR_CANCELLED          LV_ERROR("Cancelled")
#define LV_ERROR_FAILED             LV_ERROR("Failed")

#define DBUS_ERROR_INVALID_ARGS                       "org.freedesktop.DBus.Error.InvalidArgs"
#define DBUS_ERROR_ACCESS_DENIED                      "org.freedesktop.DBus.Error.AccessDenied"
#define DBUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
