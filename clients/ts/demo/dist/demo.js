// built by scripts/bundle-demo.mjs
