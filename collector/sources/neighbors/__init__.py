"""Neighbour (ARP/NDP) tables and Windows Tcpip conflict events: duplicate-IP evidence."""
