public enum IndexModule {}
