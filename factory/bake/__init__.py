"""One bake: render, Packer, the Testinfra gate, bootstrap, inputs, the pipeline."""
