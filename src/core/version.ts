/** asp's own version: what `asp --version` prints and every trace carries (`service.version`). A unit test holds it to package.json's. */
export const ASP_VERSION = '0.1.0';
