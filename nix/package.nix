# FakeNotify's three artifacts in one package: bin/fakenotifyd, bin/fakenotify-ctl and
# lib/fakenotify/libfakenotify.so (also as libfakenotify_preload.so). The preload is a cargo
# workspace of its own (preload/Cargo.toml says why), so it is a second buildRustPackage with
# its own Cargo.lock, copied in at install time.
{
  lib,
  rustPlatform,
}:

let
  version = (lib.importTOML ../Cargo.toml).workspace.package.version;

  # The repository without build outputs, so that a local target/ does not enter the store.
  src = lib.cleanSourceWith {
    src = ../.;
    filter =
      path: type:
      !(type == "directory" && builtins.elem (baseNameOf path) [
        "target"
        "result"
      ])
      && lib.cleanSourceFilter path type;
  };

  meta = {
    description = "inotify for NFS, SMB/CIFS, FUSE and 9p mounts, through an LD_PRELOAD library and a polling daemon";
    homepage = "https://github.com/fakenotify/fakenotify";
    license = with lib.licenses; [
      mit
      asl20
    ];
    platforms = lib.platforms.linux;
  };

  preload = rustPlatform.buildRustPackage {
    pname = "fakenotify-preload";
    inherit version src;
    cargoLock.lockFile = ../preload/Cargo.lock;
    cargoRoot = "preload";
    buildAndTestSubdir = "preload";
    # The preload's own tests run in the repository's CI; here only the library is wanted.
    doCheck = false;
    meta = meta // {
      description = "libfakenotify.so, the LD_PRELOAD half of FakeNotify";
    };
  };
in
rustPlatform.buildRustPackage {
  pname = "fakenotify";
  inherit version src;
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [
    "-p"
    "fakenotifyd"
    "-p"
    "fakenotify-ctl"
  ];
  # The end-to-end suite needs FUSE, root and real clients, which the build sandbox lacks; the
  # NixOS VM test (nix/test.nix) exercises the package instead.
  doCheck = false;

  postInstall = ''
    install -Dm755 ${preload}/lib/libfakenotify.so $out/lib/fakenotify/libfakenotify.so
    ln -s libfakenotify.so $out/lib/fakenotify/libfakenotify_preload.so
    install -Dm644 deploy/config.example.toml $out/share/fakenotify/config.example.toml
    install -Dm644 man/fakenotify-ctl.1 $out/share/man/man1/fakenotify-ctl.1
    install -Dm644 man/fakenotify.7 $out/share/man/man7/fakenotify.7
    install -Dm644 man/fakenotifyd.8 $out/share/man/man8/fakenotifyd.8
    install -Dm644 completions/fakenotify-ctl.bash $out/share/bash-completion/completions/fakenotify-ctl
    ln -s fakenotify-ctl $out/share/bash-completion/completions/fakenotifyd
    install -Dm644 completions/_fakenotify $out/share/zsh/site-functions/_fakenotify
    install -Dm644 completions/fakenotify-ctl.fish $out/share/fish/vendor_completions.d/fakenotify-ctl.fish
    install -Dm644 completions/fakenotifyd.fish $out/share/fish/vendor_completions.d/fakenotifyd.fish
  '';

  passthru = {
    inherit preload;
  };

  meta = meta // {
    mainProgram = "fakenotifyd";
  };
}
