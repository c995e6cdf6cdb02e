"""Transit cards on the phone: the offline purse applet, the gates' secure modules, the
cities' fare engines, tap upload, clearing and the blacklist."""
