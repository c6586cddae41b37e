# NixOS VM test: the module's daemon comes up, and an inotifywait preloaded through preloadInto
# sees a file created behind a bindfs mount (as another NFS client would create it), while the
# same inotifywait without the preload sees nothing.
#
#   nix build .#checks.x86_64-linux.vm-test      (needs KVM)
{
  pkgs ? import <nixpkgs> { },
  package ? pkgs.callPackage ./package.nix { },
}:

pkgs.testers.runNixOSTest {
  name = "fakenotify";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ ./module.nix ];

      services.fakenotify = {
        enable = true;
        inherit package;
        settings.daemon.default_poll_interval = "500ms";
        preloadInto = [ "watch-preloaded" ];
      };

      environment.systemPackages = [
        pkgs.bindfs
        pkgs.inotify-tools
      ];

      # Two identical watchers of the FUSE mount; only the first is preloaded.
      systemd.services =
        pkgs.lib.genAttrs
          [
            "watch-preloaded"
            "watch-plain"
          ]
          (name: {
            serviceConfig.ExecStart = "${pkgs.runtimeShell} -c 'exec ${pkgs.inotify-tools}/bin/inotifywait -m -e create --format %%f /mnt/remote > /run/${name}.log'";
          });
    };

  testScript = ''
    machine.wait_for_unit("fakenotify.socket")
    machine.succeed("mkdir -p /srv/backing /mnt/remote")
    machine.succeed("bindfs /srv/backing /mnt/remote")
    machine.succeed("systemctl start watch-preloaded watch-plain")
    machine.wait_for_unit("fakenotify.service")
    machine.wait_until_succeeds("fakenotify-ctl status --json | grep -q '\"watches\":1'", timeout=30)
    machine.sleep(2)

    # Behind the mount: the kernel sends no inotify event for /mnt/remote.
    machine.succeed("touch /srv/backing/new-episode.mkv")
    machine.wait_until_succeeds("grep -qx new-episode.mkv /run/watch-preloaded.log", timeout=30)
    machine.sleep(2)
    machine.fail("grep -q new-episode.mkv /run/watch-plain.log")

    # Reload and status work through the installed ctl.
    machine.succeed("systemctl reload fakenotify.service")
    machine.succeed("fakenotify-ctl status")
  '';
}
