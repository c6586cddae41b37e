# NixOS module: services.fakenotify runs fakenotifyd under systemd with socket activation and
# preloads libfakenotify.so into the services named in preloadInto.
#
#   services.fakenotify = {
#     enable = true;
#     settings.watch = [ { path = "/mnt/nas/media"; poll_interval = "5s"; } ];
#     settings.feed = [ {
#       command = [ "ssh" "nas" "fakenotify-ctl" "feed" "/volume1/media" ];
#       remote = "/volume1/media"; local = "/mnt/nas/media"; safety_interval = "10m";
#     } ];
#     preloadInto = [ "jellyfin" "sonarr" ];
#   };
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.fakenotify;
  settingsFormat = pkgs.formats.toml { };
  configFile = settingsFormat.generate "fakenotify.toml" cfg.settings;
  socket = cfg.settings.daemon.socket or "/run/fakenotify/fakenotify.sock";
  library = "${cfg.package}/lib/fakenotify/libfakenotify.so";
  # A [[feed]] command (ssh to the file server, an MQTT subscriber) needs the network.
  hasFeeds = (cfg.settings.feed or [ ]) != [ ];
in
{
  options.services.fakenotify = {
    enable = lib.mkEnableOption "FakeNotify, inotify for NFS, SMB/CIFS, FUSE and 9p mounts";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The FakeNotify package: fakenotifyd, fakenotify-ctl and libfakenotify.so.";
    };

    settings = lib.mkOption {
      type = settingsFormat.type;
      default = { };
      example = lib.literalExpression ''
        {
          daemon.default_poll_interval = "10s";
          watch = [
            { path = "/mnt/nas/media"; poll_interval = "5s"; recursive = true; }
            { path = "/mnt/nas/downloads"; poll_interval = "2s"; mode = "poll"; }
          ];
          feed = [
            {
              command = [ "ssh" "-i" "/etc/fakenotify/feed_key" "nas" "fakenotify-ctl" "feed" "/volume1/media" ];
              remote = "/volume1/media";
              local = "/mnt/nas/media";
              safety_interval = "10m";
            }
          ];
        }
      '';
      description = ''
        fakenotifyd's configuration, written to /etc/fakenotify/config.toml: the [daemon] table,
        [[watch]] policies (a list under `watch`) and [[feed]] tables (a list under `feed`:
        command, remote, local, safety_interval, heartbeat_timeout), as in
        deploy/config.example.toml. With feeds the service may use IPv4 and IPv6 sockets.
        A change reloads the daemon (SIGHUP) rather than restarting it.
      '';
    };

    preloadInto = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "jellyfin"
        "sonarr"
        "radarr"
      ];
      description = ''
        Names of systemd services (defined elsewhere) that get LD_PRELOAD=libfakenotify.so and
        FAKENOTIFY_SOCKET, and start after fakenotify.socket and fakenotify.service.
      '';
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        environment.systemPackages = [ cfg.package ];
        environment.etc."fakenotify/config.toml".source = configFile;

        systemd.sockets.fakenotify = {
          description = "FakeNotify socket";
          wantedBy = [ "sockets.target" ];
          socketConfig = {
            ListenSequentialPacket = socket;
            SocketMode = "0666";
            DirectoryMode = "0755";
          };
        };

        systemd.services.fakenotify = {
          description = "FakeNotify: inotify events for NFS, SMB, FUSE and 9p mounts";
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [
            "network-online.target"
            "remote-fs.target"
          ];
          reloadTriggers = [ configFile ];
          serviceConfig = {
            Type = "notify";
            ExecStart = "${cfg.package}/bin/fakenotifyd start --config /etc/fakenotify/config.toml";
            ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
            Restart = "on-failure";
            RestartSec = "2s";
            LimitNOFILE = 1048576;
            # As the unit: on a clean stop the daemon leaves its instance sockets and polled
            # objects in systemd's fd store and resumes them, so a restart (a rebuild switch)
            # keeps every application's watches.
            FileDescriptorStoreMax = 1048576;
            RuntimeDirectory = "fakenotify";
            RuntimeDirectoryMode = "0755";
            RuntimeDirectoryPreserve = "yes";
            # As deploy/systemd/fakenotify.service: CAP_DAC_READ_SEARCH to reopen the
            # directories applications pass, CAP_SETUID to create each application's inotify
            # fd as its user, AF_NETLINK for sock_diag; nothing else of root.
            ProtectSystem = "strict";
            ProtectHome = "read-only";
            PrivateTmp = true;
            PrivateDevices = true;
            NoNewPrivileges = true;
            CapabilityBoundingSet = [ "CAP_DAC_READ_SEARCH" "CAP_SETUID" ];
            RestrictAddressFamilies = [
              "AF_UNIX"
              "AF_NETLINK"
            ]
            ++ lib.optionals hasFeeds [
              "AF_INET"
              "AF_INET6"
            ];
            RestrictNamespaces = true;
            RestrictRealtime = true;
            RestrictSUIDSGID = true;
            LockPersonality = true;
            MemoryDenyWriteExecute = true;
            ProtectClock = true;
            ProtectControlGroups = true;
            ProtectHostname = true;
            ProtectKernelLogs = true;
            ProtectKernelModules = true;
            ProtectKernelTunables = true;
            SystemCallArchitectures = "native";
            SystemCallFilter = [
              "@system-service"
              "~@clock @cpu-emulation @debug @module @mount @obsolete @raw-io @reboot @swap"
            ];
            SystemCallErrorNumber = "EPERM";
            UMask = "0022";
          };
        };
      }
      {
        systemd.services = lib.genAttrs cfg.preloadInto (_name: {
          environment = {
            LD_PRELOAD = library;
            FAKENOTIFY_SOCKET = socket;
          };
          wants = [
            "fakenotify.socket"
            "fakenotify.service"
          ];
          after = [
            "fakenotify.socket"
            "fakenotify.service"
          ];
        });
      }
    ]
  );
}
