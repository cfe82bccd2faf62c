//! See the module's owner; tests land here.
