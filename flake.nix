{
  description = "FakeNotify: inotify for NFS, SMB/CIFS, FUSE and 9p mounts";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      # bin/fakenotifyd, bin/fakenotify-ctl, lib/fakenotify/libfakenotify.so
      packages = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nix/package.nix { };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          # What `just test` and `just lint` use: the end-to-end tests need a FUSE mount,
          # inotify clients and a musl compiler.
          packages = with pkgs; [
            cargo
            rustc
            clippy
            rustfmt
            just
            bindfs
            fuse3
            inotify-tools
            musl
            nodejs
            shellcheck
          ];
        };
      });

      # pkgs.fakenotify for configurations that take it from nixpkgs with this overlay.
      overlays.default = final: _prev: { fakenotify = final.callPackage ./nix/package.nix { }; };

      nixosModules.default = import ./nix/module.nix;

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.system}.default;
        vm-test = import ./nix/test.nix {
          inherit pkgs;
          package = self.packages.${pkgs.system}.default;
        };
      });
    };
}
