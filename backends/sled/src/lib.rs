//! The sled backend. Not implemented yet: the factory answers "not available in this build" when it is chosen.
